"""Privacy guarantees of the local product, proved by failing on any network attempt."""

import socket

import pytest

from helpers import agent_from_template


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    for name in ("connect", "connect_ex", "sendto", "bind"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_the_whole_local_loop_opens_no_socket(demo_database, encoder, tmp_path, no_network):
    agent = agent_from_template(demo_database, encoder)
    history = tmp_path / "history.csv"
    history.write_text("title,year,feedback\nAlien,1979,like\nBabe,1995,dislike\n")
    agent.import_file(history)
    agent.describe_taste("dark science fiction")
    slate = agent.recommend(10)
    agent.feedback(slate[0].item.id, "like")
    agent.feedback(slate[1].item.id, "rating", 2.0)
    agent.retrain()
    agent.recommend(10, query="space")
    agent.search("alien")
    agent.export()
    assert no_network == []
