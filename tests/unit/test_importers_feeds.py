"""RSS and Atom feeds: items, their dates, and feeds that are not feeds."""

from __future__ import annotations

import pytest

from agent.core.importers import ImportFailed, detect_format, import_file
from agent.core.store import Store
from import_helpers import by_title, write


@pytest.fixture
def store() -> Store:
    return Store.memory()


# -- RSS and Atom ----------------------------------------------------------------------------

RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel>
    <title>Example News</title>
    <link>https://news.example.org/</link>
    <item>
      <title>Rates rise</title>
      <link>https://news.example.org/rates</link>
      <guid isPermaLink="false">news-1</guid>
      <description>&lt;p&gt;The bank &lt;b&gt;raised&lt;/b&gt; rates.&lt;/p&gt;&lt;p&gt;Again&amp;nbsp;today.&lt;/p&gt;</description>
      <pubDate>Tue, 05 Mar 2024 10:30:00 +0100</pubDate>
      <dc:creator>Ann Writer</dc:creator>
    </item>
    <item>
      <description>No title, no link.</description>
    </item>
    <item>
      <link>https://news.example.org/untitled</link>
      <description><![CDATA[<div>Only a <i>body</i> here</div>]]></description>
      <pubDate>not a date</pubDate>
    </item>
  </channel>
</rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Atom Blog</title>
  <id>urn:uuid:feed</id>
  <entry>
    <title>First post</title>
    <id>tag:blog.example.org,2024:1</id>
    <link rel="edit" href="https://blog.example.org/edit/1"/>
    <link rel="alternate" href="https://blog.example.org/1"/>
    <updated>2024-02-01T09:00:00Z</updated>
    <published>2024-01-31T08:00:00+02:00</published>
    <author><name>Bo Blogger</name></author>
    <content type="html">&lt;p&gt;Hello &lt;a href="x"&gt;world&lt;/a&gt;&lt;/p&gt;</content>
  </entry>
  <entry>
    <summary>nothing to identify me</summary>
  </entry>
</feed>
"""


def test_rss(store, tmp_path):
    path = write(tmp_path / "news.xml", RSS)
    report = import_file(store, path)
    assert [(p.line, p.message) for p in report.problems] == [(14, "entry 2 has neither a title nor a link")]
    assert report.items_added == 2
    items = by_title(store)
    rates = items["Rates rise"]
    assert (rates.source, rates.external_id) == ("rss:Example News", "news-1")
    assert rates.text == "Rates rise. The bank raised rates. Again today."
    assert rates.metadata == {"url": "https://news.example.org/rates", "published": "2024-03-05T09:30:00+00:00",
                              "author": "Ann Writer"}
    untitled = items["Only a body here"]
    assert untitled.external_id == "https://news.example.org/untitled"
    assert untitled.metadata == {"url": "https://news.example.org/untitled"}
    assert store.interaction_count() == 0
    assert import_file(store, path).items_unchanged == 2


def test_atom(store, tmp_path):
    path = write(tmp_path / "blog.atom", ATOM)
    report = import_file(store, path)
    assert [(p.line, p.message) for p in report.problems] == [(15, "entry 2 has neither a title nor a link")]
    [post] = store.items()
    assert (post.source, post.external_id, post.title) == ("rss:Atom Blog", "tag:blog.example.org,2024:1", "First post")
    assert post.text == "First post. Hello world"
    assert post.metadata == {"url": "https://blog.example.org/1", "published": "2024-01-31T06:00:00+00:00",
                             "author": "Bo Blogger"}


def test_feed_without_title_uses_file_name(store, tmp_path):
    path = write(tmp_path / "feed.rss", '<rss><channel><item><title>T</title></item></channel></rss>')
    import_file(store, path)
    [item] = store.items()
    assert (item.source, item.title, item.text) == ("rss:feed.rss", "T", "T.")


def test_rss_1_0(store, tmp_path):
    path = write(tmp_path / "rdf.xml", """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
         xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="https://r.example.org/"><title>RDF News</title></channel>
  <item rdf:about="https://r.example.org/1"><title>One</title><dc:date>2024-05-01T12:00:00Z</dc:date></item>
</rdf:RDF>
""")
    assert detect_format(path) == "rss"
    import_file(store, path)
    [item] = store.items()
    assert (item.source, item.external_id, item.title) == ("rss:RDF News", "https://r.example.org/1", "One")
    assert item.metadata == {"url": "https://r.example.org/1", "published": "2024-05-01T12:00:00+00:00"}


def test_a_broken_feed_is_read_as_far_as_it_goes_and_the_break_is_reported(store, tmp_path):
    broken = write(tmp_path / "broken.xml", "<rss><channel><item><title>A</title></item>\n<oops></rss>")
    report = import_file(store, broken)
    assert [(p.line, p.message.split(";")[0]) for p in report.problems] == [
        (2, "not well-formed XML (line 2: mismatched tag)")]
    assert [item.title for item in store.items()] == ["A"]


def test_not_a_feed_fails_and_writes_nothing(store, tmp_path):
    with pytest.raises(ImportFailed, match=r"plain\.rss: not an RSS or Atom feed; it is not well-formed XML \(line 1"):
        import_file(store, write(tmp_path / "plain.rss", "just text"))
    with pytest.raises(ImportFailed, match=r"not an RSS or Atom feed \(the root element is <html>\)"):
        import_file(store, write(tmp_path / "page.xml", "<html><body/></html>"))
    assert store.item_count() == 0
