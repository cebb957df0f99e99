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


# -- feeds from the wild: encodings, old dates, entities, guids --------------------------------


def feed_bytes(encoding: str, declare: bool = True, title: str = "新聞") -> bytes:
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>\n' if declare else ""
    return (f'{declaration}<rss version="2.0"><channel><title>{title}</title>'
            f'<item><title>{title} 一</title><link>https://e.example/1</link></item></channel></rss>').encode(encoding)


@pytest.mark.parametrize("encoding, title", [("big5", "新聞"), ("gb2312", "新闻"), ("euc-kr", "뉴스"),
                                             ("utf-16", "Ünïcode")])
def test_feeds_in_any_declared_encoding(store, tmp_path, encoding, title):
    data = feed_bytes(encoding, title=title).replace("一".encode(encoding), b"") if encoding == "euc-kr" \
        else feed_bytes(encoding, title=title)
    path = tmp_path / "feed.xml"
    path.write_bytes(data)
    report = import_file(store, path)
    assert report.problems == []
    [item] = store.items()
    assert item.source == f"rss:{title}" and item.title.startswith(title)
    assert report.understood == "an RSS 2.0 feed (a news catalog)"


def test_undeclared_latin1_whitespace_and_bom_before_the_declaration(store, tmp_path):
    latin = tmp_path / "latin.xml"
    latin.write_bytes('<rss version="2.0"><channel><title>Café</title><item><title>Crème brûlée</title>'
                      '</item></channel></rss>'.encode("latin-1"))
    report = import_file(store, latin)
    assert [item.title for item in store.items()] == ["Crème brûlée"]
    assert report.notes == ["text in windows-1252"]
    padded = tmp_path / "padded.xml"
    padded.write_bytes(b"\n\n  \xef\xbb\xbf<?xml version='1.0' encoding='utf-8'?>\n<rss version='2.0'><channel>"
                       b"<item><title>After blank lines</title></item></channel></rss>")
    assert import_file(store, padded).problems == []
    assert "After blank lines" in by_title(store)


def test_atom_0_3_dates_and_html_entities_in_titles(store, tmp_path):
    path = write(tmp_path / "old.xml", """<?xml version="1.0" encoding="utf-8"?>
<feed version="0.3" xmlns="http://purl.org/atom/ns#">
  <title>Old Atom</title>
  <entry>
    <title type="text/html" mode="escaped">Tom &amp;amp; Jerry &amp;eacute;t&amp;eacute; &lt;b&gt;bold&lt;/b&gt;</title>
    <link rel="alternate" type="text/html" href="https://old.example/1"/>
    <id>tag:old.example,2004:1</id>
    <issued>2004-01-02T03:04:05Z</issued>
    <modified>2004-01-03T00:00:00Z</modified>
  </entry>
</feed>
""")
    report = import_file(store, path)
    assert report.understood == "an Atom 0.3 feed (a news catalog)" and report.problems == []
    [item] = store.items()
    assert item.title == "Tom & Jerry été bold"
    assert item.metadata["published"] == "2004-01-02T03:04:05+00:00"


def test_items_sharing_a_guid_do_not_collapse(store, tmp_path):
    items = "".join(f"<item><guid>same</guid><title>Story {n}</title><link>https://e.example/{n}</link></item>"
                    for n in (1, 2, 3))
    repeat = "<item><guid>once</guid><title>Alone</title></item><item><guid>once</guid><title>Alone</title></item>"
    path = write(tmp_path / "guids.xml", f"<rss version='2.0'><channel>{items}{repeat}</channel></rss>")
    report = import_file(store, path)
    assert report.items_added == 4
    ids = sorted(item.external_id for item in store.items())
    assert ids[0] == "once" and all(i.startswith("same#") for i in ids[1:]) and len(set(ids)) == 4
    assert import_file(store, path).items_unchanged == 4  # the same ids again


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss><channel><item><title>&lol9;</title></item></channel></rss>
"""


def test_xml_bombs_and_external_entities_are_refused_before_parsing(store, tmp_path, monkeypatch):
    import feedparser

    def must_not_run(*args, **kwargs):
        raise AssertionError("feedparser ran on a refused file")

    monkeypatch.setattr(feedparser, "parse", must_not_run)
    cases = {
        "bomb.xml": (BOMB, 4),
        "xxe.xml": '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                   "<rss><channel><item><title>&x;</title></item></channel></rss>",
        "remote.xml": '<!DOCTYPE r [\n<!ENTITY x PUBLIC "-//x" "http://example.invalid/x.dtd">]>'
                      "<rss><channel><item><title>&x;</title></item></channel></rss>",
        "parameter.xml": '<!DOCTYPE r [\n<!ENTITY % p SYSTEM "http://example.invalid/p.dtd"> %p;]><rss/>',
        "charref.xml": '<!DOCTYPE r [\n<!ENTITY a "x"><!ENTITY b "&#38;a;&#38;a;">]><rss/>',
    }
    for name, case in cases.items():
        text, line = case if isinstance(case, tuple) else (case, 2)
        with pytest.raises(ImportFailed, match=rf"{name}: line {line} declares an external or nested XML entity"):
            import_file(store, write(tmp_path / name, text))
    utf16 = tmp_path / "bomb16.xml"
    utf16.write_bytes(BOMB.encode("utf-16"))
    with pytest.raises(ImportFailed, match="external or nested XML entity"):
        import_file(store, utf16)
    assert store.item_count() == 0


def test_a_plain_entity_and_a_netscape_doctype_are_fine_and_nothing_is_fetched(store, tmp_path, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a feed import opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    path = write(tmp_path / "netscape.xml", """<?xml version="1.0"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91"><channel><title>Old</title>
<item><title>Ninety-one</title><link>http://old.example/1</link></item></channel></rss>
""")
    report = import_file(store, path)
    assert report.problems == [] and [item.title for item in store.items()] == ["Ninety-one"]
    plain = write(tmp_path / "plain-entity.xml", '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY copy "(c)">\n]>\n'
                  "<rss version='2.0'><channel><item><title>Mine &copy;</title></item></channel></rss>")
    import_file(store, plain)
    assert "Mine (c)" in by_title(store)


@pytest.mark.parametrize("raw, title", [
    ("Tom &amp;amp; Jerry &amp;eacute;t&amp;eacute;", "Tom & Jerry été"), ("AT&amp;T", "AT&T"), ("a &lt; b", "a < b"),
    ("&amp;#8217;quoted&amp;#8217;", "\u2019quoted\u2019"), ("Caf&#233;", "Café"),
    ("<![CDATA[Tom &amp; Jerry]]>", "Tom & Jerry"), ("&lt;b&gt;Bold&lt;/b&gt; news", "Bold news"),
])
def test_rss_titles_come_out_as_text(store, tmp_path, raw, title):
    path = write(tmp_path / "t.xml", f"<rss version='2.0'><channel><item><title>{raw}</title></item></channel></rss>")
    import_file(store, path)
    assert [item.title for item in store.items()] == [title]
