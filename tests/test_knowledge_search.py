"""Index, search, region preference, answerability and answers (fake embedder)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from knowledge import KnowledgeBase, StaleIndexError
from knowledge.answer import MORE_HINT, NOT_FOUND, PERSONAL, REPLY_LIMIT_BYTES
from knowledge.bm25 import BM25
from knowledge.config import KnowledgeConfig, bundled_corpus_dir
from knowledge.embedder import HashEmbedder
from knowledge.evaluate import passage_hits
from knowledge.expansion import Expander

LINGCHUAN = "lingchuan-county-2021-implementation-plan.txt"
CHENGKOU = "chengkou-county-2022-linkage-plan.txt"
SHAANXI = "shaanxi-province-2021-linkage-plan.txt"
SHENMU = "shenmu-city-2023-work-points.txt"


@pytest.fixture(scope="module")
def embedder() -> HashEmbedder:
    return HashEmbedder(dimension=128)


@pytest.fixture(scope="module")
def built(tmp_path_factory, embedder):
    index_dir = tmp_path_factory.mktemp("instance") / "index"
    kb = KnowledgeBase.build(bundled_corpus_dir(), index_dir, embedder, progress=False)
    return kb, index_dir


@pytest.fixture(scope="module")
def kb(built) -> KnowledgeBase:
    return built[0]


# -- BM25 and expansion --------------------------------------------------------------------


def test_bm25_prefers_documents_with_rare_query_terms():
    docs = [["小额信贷", "额度"], ["就业", "培训"], ["小额信贷", "贴息", "额度", "额度"], ["培训"]]
    bm = BM25(docs)
    scores = bm.scores({"额度": 1.0})
    assert scores[2] > scores[0] > 0 and scores[1] == 0 and scores[3] == 0
    assert bm.scores({"不存在": 1.0}).max() == 0


def test_expansion_is_data_driven():
    ex = Expander("# comment\n看病\t医疗 医保\n贷款\t小额信贷\n")
    assert ex.expand("我想贷款看病") == ["医疗", "医保", "小额信贷"]
    assert ex.expand("天气") == []
    assert "看病" in Expander().matched("看病要交钱吗")


# -- index lifecycle -----------------------------------------------------------------------


def test_load_roundtrip_and_status(built, embedder):
    kb, index_dir = built
    again = KnowledgeBase.load(index_dir, embedder)
    assert again.status() == kb.status()
    s = kb.status()
    assert s["documents"] == 5 and s["passages"] > 500 and s["model"] == embedder.name
    assert set(s) == {"documents", "passages", "model", "built_at", "corpus_hash"}
    manifest = json.loads((index_dir / "manifest.json").read_text("utf-8"))
    for key in ("model", "dimension", "corpus_hash", "tokenizer", "code_version"):
        assert manifest[key]


def test_stale_index_is_refused_with_the_fix(built):
    _, index_dir = built
    with pytest.raises(StaleIndexError) as exc:
        KnowledgeBase.load(index_dir, HashEmbedder(dimension=64))
    assert "huinong build-index" in str(exc.value) and "python -m knowledge build" in str(exc.value)


def test_missing_index_is_refused(tmp_path, embedder):
    with pytest.raises(StaleIndexError, match="no index has been built"):
        KnowledgeBase.load(tmp_path / "nothing", embedder)


def test_changed_code_version_is_refused(built, embedder, tmp_path):
    _, index_dir = built
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text("utf-8"))
    manifest["code_version"] = "repair-0.segment-0.format-0"
    (copy / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    with pytest.raises(StaleIndexError, match="segmenter code changed"):
        KnowledgeBase.load(copy, embedder)


def test_changed_corpus_is_refused_and_open_or_build_rebuilds(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(
        "一、总体要求\n\n（一）小额信贷。对脱贫人口给予贷款支持，额度原则上5万元以下。\n", "utf-8"
    )
    entry = {
        "file": "a.txt",
        "title": "测试方案",
        "issuer": "测试县人民政府",
        "doc_no": None,
        "date": "2022-01-01",
        "level": "county",
        "region": {"province": "陕西省", "city": None, "county": "测试县"},
    }
    (corpus / "manifest.json").write_text(json.dumps({"documents": [entry]}, ensure_ascii=False), "utf-8")
    index_dir = tmp_path / "index"
    kb1 = KnowledgeBase.open_or_build(corpus, index_dir, embedder, progress=False)
    assert kb1.status()["passages"] == 1
    # Adding a document and its manifest entry is all it takes.
    (corpus / "b.md").write_text("# 二、就业帮扶\n\n1. **稳定就业**。开发公益岗位安置弱劳力。\n", "utf-8")
    entry_b = dict(entry, file="b.md", title="测试就业方案")
    (corpus / "manifest.json").write_text(
        json.dumps({"documents": [entry, entry_b]}, ensure_ascii=False), "utf-8"
    )
    with pytest.raises(StaleIndexError, match="corpus changed"):
        KnowledgeBase.load(index_dir, embedder, corpus_dir=corpus)
    notes = []
    kb2 = KnowledgeBase.open_or_build(corpus, index_dir, embedder, progress=False, notify=notes.append)
    assert kb2.status()["documents"] == 2 and notes and "corpus changed" in notes[0]
    hit = kb2.search("公益岗位", k=1).passages[0]
    assert hit.doc == "b.md" and hit.text == (corpus / "b.md").read_text("utf-8")[hit.start : hit.end]


def test_docx_documents_are_read(tmp_path, embedder):
    import zipfile

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    body = "".join(
        f"<w:p><w:r><w:t>{t}</w:t></w:r></w:p>"
        for t in ("一、饮水安全", "（一）应急供水。对因干旱造成的停水断水，采取应急送水供水措施。")
    )
    xml = f'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>'
    with zipfile.ZipFile(corpus / "c.docx", "w") as zf:
        zf.writestr("word/document.xml", xml)
    entry = {
        "file": "c.docx",
        "title": "供水方案",
        "issuer": "某县",
        "date": "2022",
        "region": {"province": "陕西省"},
    }
    (corpus / "manifest.json").write_text(json.dumps({"documents": [entry]}, ensure_ascii=False), "utf-8")
    kb = KnowledgeBase.build(corpus, tmp_path / "index", embedder, progress=False)
    hit = kb.search("停水了怎么办", k=1).passages[0]
    assert hit.section == "一、 （一）" and "应急送水" in hit.text


# -- search --------------------------------------------------------------------------------


def test_hits_carry_metadata_and_exact_offsets(kb):
    res = kb.search("扶贫小额信贷额度", k=5)
    assert res.passages
    for h in res.passages:
        assert h.text == kb.source(h.doc)[h.start : h.end]
        assert h.title and h.issuer and h.date and isinstance(h.region, dict)
        assert set(h.to_contract()) == {"doc", "section", "text", "start", "end", "score"}


def test_table_row_finds_the_number(kb):
    res = kb.search("2025年脱贫人口基本医疗保障率目标是多少", k=3)
    rows = [h for h in res.passages if h.kind == "table_row"]
    assert rows, [h.display for h in res.passages]
    row = rows[0]
    assert row.doc == SHAANXI and "2025年：95" in row.display and "属性：约束性" in row.display
    assert row.text == kb.source(row.doc)[row.start : row.end]


def test_colloquial_question_reaches_policy_wording(kb):
    item = {"doc": SHAANXI, "gold": "继续推行“先诊疗后付费”“一站式”结算"}
    res = kb.search("住院能不能先看病后交钱？", k=5)
    assert any(passage_hits(h.doc, h.text, item) for h in res.passages)


def test_named_place_comes_first(kb):
    res = kb.search("陵川县对易返贫致贫人口的排查核查频次有什么要求？", k=5)
    assert res.passages[0].doc == LINGCHUAN
    assert all(h.doc != CHENGKOU for h in res.passages[:1])


def test_lingchuan_question_never_gets_a_chongqing_answer_first(kb):
    for q in ("陵川的公益岗位怎么管理？", "陵川县危房改造", "我是陵川的，医保参保有资助吗"):
        assert kb.search(q, k=3).passages[0].doc == LINGCHUAN, q


def test_asker_region_prefers_own_county_and_province(kb):
    question = "小额信贷政策有哪些要求？"
    plain = [h.doc for h in kb.search(question, k=5).passages]
    local = [h.doc for h in kb.search(question, region="陕西省榆林市神木市", k=5).passages]
    assert local[0] in (SHENMU, SHAANXI)
    assert sum(d in (SHENMU, SHAANXI) for d in local) >= sum(d in (SHENMU, SHAANXI) for d in plain)


# -- answerability and answers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "reason"),
    [
        ("身份证号610929198512034417的监测户，帮扶责任人是谁？", "personal"),
        ("王桂兰家的低保批下来没有？", "personal"),
        ("河南省的防返贫监测政策是怎么规定的？", "unknown_place"),
        ("吗？", "no_content"),
    ],
)
def test_questions_the_documents_cannot_answer_are_declined(kb, question, reason):
    res = kb.search(question)
    assert res.answerable is False and res.reason == reason


def test_not_found_answer_is_honest(kb):
    ans = kb.answer("河南省的低保标准是多少？")
    assert ans.answerable is False and ans.text == NOT_FOUND and ans.next_offset is None
    assert kb.answer("王桂兰家的低保批下来没有？").text == PERSONAL


def test_provinces_named_only_by_abbreviation_still_count_as_mentioned(kb):
    # The Chengkou plan speaks of "川渝": a question mentioning 四川 is not about an unknown place.
    q = kb.retriever.analyse("我在四川那边看门诊，城口的医保能直接结算不？")
    assert q.unknown_places == []


def test_answer_quotes_verbatim_cites_and_pages(kb):
    question = "扶贫小额信贷的额度是多少？"
    res = kb.search(question, k=8)
    ans = kb.answer(question)
    assert ans.answerable
    first = ans.passages[0]
    assert first.display in ans.text
    assert f"《{first.title}》" in ans.text and first.issuer in ans.text and first.date in ans.text
    assert len(ans.text.encode("utf-8")) <= REPLY_LIMIT_BYTES
    assert ans.text.endswith(MORE_HINT) and ans.next_offset == len(ans.passages)
    more = kb.answer(question, offset=ans.next_offset)
    assert more.passages[0].index == res.passages[ans.next_offset].index
    assert more.passages[0].display in more.text


def test_answer_is_trimmed_to_the_reply_limit(kb, monkeypatch):
    from knowledge import answer as answer_module

    monkeypatch.setattr(answer_module, "REPLY_LIMIT_BYTES", 300)
    ans = kb.answer("扶贫小额信贷的额度是多少？")
    assert len(ans.text.encode("utf-8")) <= 300 and "……" in ans.text


def test_quote_check_fails_on_a_tampered_passage(kb):
    from knowledge.answer import verified_quote

    hit = kb.search("扶贫小额信贷的额度是多少？", k=1).passages[0]
    hit.display = hit.display + "另加一万元"
    with pytest.raises(AssertionError):
        verified_quote(kb, hit)


def test_clauses_for_risk_types(kb):
    hits = kb.clauses_for(["因病", "医疗救助"], k=3)
    assert 0 < len(hits) <= 3 and all(h.text for h in hits)
    assert kb.clauses_for([]) == []


# -- configuration and the batch contract ---------------------------------------------------


def test_config_reads_the_project_variables(tmp_path):
    cfg = KnowledgeConfig.from_env(
        {
            "HUINONG_CORPUS_DIR": str(tmp_path),
            "HUINONG_INSTANCE_DIR": str(tmp_path / "inst"),
            "HUINONG_EMBEDDING_MODEL": "",
        }
    )
    assert cfg.corpus_dir == tmp_path and cfg.index_dir == tmp_path / "inst" / "index"
    assert cfg.embedding_model is None and cfg.model_cache_dir == tmp_path / "inst" / "models"
    default = KnowledgeConfig.from_env({})
    assert default.corpus_dir == bundled_corpus_dir() and default.instance_dir == Path("instance")


def test_batch_contract_cli(tmp_path):
    env = dict(os.environ, HUINONG_INSTANCE_DIR=str(tmp_path), HUINONG_CORPUS_DIR=str(bundled_corpus_dir()))
    lines = [
        {"id": "a", "question": "陵川县对易返贫致贫人口的排查核查频次有什么要求？"},
        {"id": "b", "question": "王桂兰家的低保批下来没有？", "region": "神木市"},
    ]
    stdin = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n"
    proc = subprocess.run(
        [sys.executable, "-m", "knowledge", "search", "--top-k", "5", "--jsonl", "--fake-embedder"],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[1]["answerable"] is False
    assert len(rows[0]["passages"]) == 5
    for p in rows[0]["passages"]:
        assert set(p) == {"doc", "section", "text", "start", "end", "score"}
        original = (bundled_corpus_dir() / p["doc"]).read_text("utf-8")
        assert original[p["start"] : p["end"]] == p["text"]
    assert "ingest" in proc.stderr  # the index was built first, progress on stderr


# -- evaluation ------------------------------------------------------------------------------


def test_scoring_rule_ignores_whitespace_and_tolerates_repairs():
    item = {
        "doc": "a.txt",
        "gold": "迁群众就业不少于当年或当期新增岗位的 10%",
        "alt_gold": [{"doc": "b.txt", "gold": "就近就业"}],
    }
    assert passage_hits("a.txt", "吸纳搬\n\n迁群众就业不少于当年或当期新增岗位的10%。", item)
    assert not passage_hits("c.txt", "迁群众就业不少于当年或当期新增岗位的10%", item)
    assert passage_hits("b.txt", "支持就近\n就业", item)
    # A page-break repair may change a character or two: a common run of 80 % still counts.
    long_gold = {
        "doc": "a.txt",
        "gold": "对特困人员全额资助，对低保对象定额资助，对返贫致贫人口过渡期内定额资助",
    }
    assert passage_hits(
        "a.txt", "对特困人员全额资助，对低保对象定额资助，对返贫致贫人口过渡期内定额资", long_gold
    )
    assert not passage_hits("a.txt", "对特困人员全额资助", long_gold)


def test_eval_command_reports_every_pipeline(tmp_path):
    qa = tmp_path / "qa.jsonl"
    un = tmp_path / "un.jsonl"
    qa.write_text(
        json.dumps(
            {
                "id": "q1",
                "question": "陵川县对易返贫致贫人口的排查核查频次有什么要求？",
                "doc": LINGCHUAN,
                "gold": "乡村两级每月组织一次排查核查",
            },
            ensure_ascii=False,
        )
        + "\n",
        "utf-8",
    )
    un.write_text(
        json.dumps({"id": "u1", "question": "王桂兰家的低保批下来没有？"}, ensure_ascii=False) + "\n", "utf-8"
    )
    env = dict(
        os.environ, HUINONG_INSTANCE_DIR=str(tmp_path / "inst"), HUINONG_CORPUS_DIR=str(bundled_corpus_dir())
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "knowledge",
            "eval",
            "--qa",
            str(qa),
            "--unanswerable",
            str(un),
            "--fake-embedder",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    for label in ("BM25 alone", "dense alone", "full pipeline", "full, RRF"):
        assert label in proc.stdout
    assert "hit@1" in proc.stdout and "p95ms" in proc.stdout


@pytest.mark.parametrize(
    ("question", "personal"),
    [
        ("我家的低保批下来没有？", True),
        ("俺家的补助到账了吗", True),
        ("张秀英家的医疗救助办好了没有？", True),
        ("电话13912345678这户的帮扶干部是谁？", True),
        ("我家房子能办危改吗？", False),
        ("我家能办低保不？", False),
        ("白河县的危房改造补助发放有啥要求？", False),
        ("村里王主任说的政策对吗", False),
    ],
)
def test_personal_record_questions_are_told_from_policy_questions(question, personal):
    from knowledge.answerability import personal_reason

    assert (personal_reason(question) is not None) is personal


def test_processes_starting_together_build_once(tmp_path, embedder):
    import threading

    index_dir = tmp_path / "index"
    notes: list[str] = []
    results: list[KnowledgeBase] = []

    def start() -> None:
        kb = KnowledgeBase.open_or_build(
            bundled_corpus_dir(), index_dir, embedder, progress=False, notify=notes.append
        )
        results.append(kb)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and len(notes) == 1
    assert results[0].status() == results[1].status()
    assert not [
        p for p in tmp_path.iterdir() if p.name.startswith(".index.tmp") or p.name.startswith(".index.old")
    ]


def test_more_stops_when_passages_stop_being_relevant(kb):
    question = "扶贫小额信贷的额度是多少？"
    offset, seen = 0, 0
    while offset is not None and seen < 10:
        ans = kb.answer(question, offset=offset)
        seen += 1
        offset = ans.next_offset
    assert offset is None and seen < 10
    assert kb.answer(question, offset=40).text == "没有更多相关条文了。"


@pytest.mark.parametrize(
    ("question", "unknown"),
    [
        ("河南省的防返贫监测政策是怎么规定的？", ["河南省"]),
        ("兰州的低保标准是多少？", ["甘肃省"]),
        ("甘肃那边搬迁户的后续扶持政策跟陕西一样吗？", ["甘肃省"]),
        ("我在深圳打工，路费能报吗？", []),  # where the asker works, not whose policy
        ("去广东务工有没有交通补助？", []),
        ("在城口看病，能一站式结算吗？", []),
    ],
)
def test_places_without_documents(kb, question, unknown):
    assert kb.retriever.analyse(question).unknown_places == unknown
