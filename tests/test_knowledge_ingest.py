"""Ingest: artefact repairs, heading recovery, table rows and exact offsets."""

from __future__ import annotations

import pytest

from knowledge.config import bundled_corpus_dir
from knowledge.corpus import load_corpus
from knowledge.headings import match_heading
from knowledge.repair import repair
from knowledge.segment import segment
from knowledge.spans import check_runs
from knowledge.tokenize import Tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


def passages_of(text: str, tokenizer: Tokenizer, name: str = "t.txt"):
    return segment(name, text, repair(text, tokenizer.is_word))


def displays(text: str, tokenizer: Tokenizer) -> list[str]:
    return [p.display for p in passages_of(text, tokenizer)]


# -- artefact repairs ----------------------------------------------------------------------


def test_paragraph_broken_at_page_end_is_joined(tokenizer):
    text = "一、总体要求\n\n（一）目标。到2035年，全县经济实力显\n\n著增强，乡村振兴取得重大进展。\n"
    (p,) = passages_of(text, tokenizer)
    assert "全县经济实力显著增强" in p.display
    assert p.text == text[p.start : p.end]


def test_character_repeated_across_page_break_is_kept_once(tokenizer):
    text = "一、要求\n\n1.强化金融。鼓励金融机构创新金融产品和服务\n\n务，拓宽抵质押范围。\n"
    (p,) = passages_of(text, tokenizer)
    assert "产品和服务，拓宽" in p.display
    assert "服务务" not in p.display


def test_word_repeated_across_page_break_is_kept_once(tokenizer):
    text = (
        "一、要求\n\n1.学习。加强对习近平新时代中国特色社会主义思想\n\n主义思想的学习和理解，切实增强意识。\n"
    )
    (p,) = passages_of(text, tokenizer)
    assert "社会主义思想的学习" in p.display


def test_real_word_pair_at_a_page_break_is_left_alone(tokenizer):
    # "支持" + "持续" is ordinary text, not a doubled character.
    text2 = "一、要求\n\n1.产业。县里将继续对重点产业给予大力支持\n\n持续推进项目建设，确保各项工作落实。\n"
    (p2,) = passages_of(text2, tokenizer)
    assert "大力支持持续推进" in p2.display


def test_heading_broken_over_two_lines_is_joined(tokenizer):
    text = "第五章 有序推进巩固拓展脱贫攻坚成果同\n乡村振兴有效衔接\n\n第一节 做好政策衔接\n\n（一）财政政策衔接\n\n1.保持稳定。过渡期内保持财政支持政策总体稳定。\n"
    (p,) = passages_of(text, tokenizer)
    assert p.heading.startswith("第五章 有序推进巩固拓展脱贫攻坚成果同乡村振兴有效衔接")
    assert p.section == "第五章 第一节 （一） 1."


def test_stray_page_markers_and_markdown_are_dropped(tokenizer):
    text = (
        "## 一、总体要求\n\n- 3 -\n\n#### **二、重点任务**\n\n"
        "1. **完善就业帮扶政策。**充分发挥就业补助资金的保障作用。（**县人社局牵头**）\n\n---\n"
    )
    ps = passages_of(text, tokenizer)
    assert [p.section for p in ps] == ["二、 1."]
    assert ps[0].display == "1.完善就业帮扶政策。充分发挥就业补助资金的保障作用。（县人社局牵头）"
    assert "- 3 -" not in ps[0].display


def test_full_and_half_width_numbering_are_the_same_label(tokenizer):
    for line in (
        "（一）加强组织领导。各镇要落实。",
        "(一) 加强组织领导。各镇要落实。",
        "（一） 加强组织领导。各镇要落实。",
    ):
        h = match_heading(line)
        assert h is not None and h.label == "（一）" and h.title == "加强组织领导" and h.inline
    for line in (
        "1.完善监测方式。完善农户自主申报。",
        "1、完善监测方式。完善农户自主申报。",
        "１．完善监测方式。完善农户自主申报。",
        "1. 完善监测方式。完善农户自主申报。",
    ):
        h = match_heading(line)
        assert h is not None and h.label == "1." and h.level == 5


# -- heading recovery ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "label", "level"),
    [
        ("第三章 扎实巩固脱贫攻坚成果", "第三章", 1),
        ("第一节\u2002 巩固“两不愁三保障”和饮水安全成果", "第一节", 2),
        ("一、总体要求", "一、", 3),
        ("（二）巩固健康帮扶成果", "（二）", 4),
        ("专栏3-1 防返贫监测预警大数据管理平台", "专栏3-1", 4.5),
        ("4.夯实医疗救助托底保障。建立分类实施依申请救助机制。", "4.", 5),
        ("（3）加强质量安全管理。严格履行审批手续。", "（3）", 6),
    ],
)
def test_heading_levels(line, label, level):
    h = match_heading(line)
    assert h is not None
    assert (h.label, h.level) == (label, level)


@pytest.mark.parametrize(
    "line",
    [
        "2025年，全县所有农村集体经济年经营性收入达到5万元以上。",
        "2021 年水毁线路设备全面恢复，加大农村电网建设改造力度。",
        "1.5倍为底线，合理确定监测范围。",
        "2.4∶1",
        "100",
        "10%的社区达到示范标准。",
        "一、二级重度残疾人继续实施“单人保”政策。",
        "5万元（含）以下的贷款给予贴息。",
    ],
)
def test_body_text_starting_with_a_number_is_not_a_heading(line):
    assert match_heading(line) is None


def test_number_led_body_paragraph_stays_in_its_clause(tokenizer):
    text = (
        "二、重点任务\n\n（六）实施集体经济提升发展行动。积极拓展发展模式，增加农民收入。到\n\n"
        "2025年，全县所有农村集体经济年经营性收入达到5万元以上。\n\n（七）实施技术帮扶培训行动。开展技术指导。\n"
    )
    ps = passages_of(text, tokenizer)
    assert [p.section for p in ps] == ["二、 （六）", "二、 （七）"]
    assert "到2025年，全县所有农村集体经济" in ps[0].display


def test_heading_tree_gives_section_paths(tokenizer):
    text = (
        "第三章 扎实巩固脱贫攻坚成果\n\n第一节 巩固成果\n\n（一）巩固教育帮扶成果\n\n"
        "1.巩固控辍保学成果。持续落实责任制。\n\n2.精准资助学生。全面落实资助政策。\n\n"
        "（二）巩固健康帮扶成果\n\n1.优化资助参保政策。继续资助参保。\n\n第二节 健全监测机制\n\n"
        "建立动态监测帮扶机制。\n"
    )
    ps = passages_of(text, tokenizer)
    assert [p.section for p in ps] == [
        "第三章 第一节 （一） 1.",
        "第三章 第一节 （一） 2.",
        "第三章 第一节 （二） 1.",
        "第三章 第二节",
    ]
    assert (
        ps[2].heading
        == "第三章 扎实巩固脱贫攻坚成果 › 第一节 巩固成果 › （二）巩固健康帮扶成果 › 1.优化资助参保政策"
    )


def test_unnumbered_paragraph_continues_its_numbered_clause(tokenizer):
    text = "二、任务\n\n31.完善养老服务。加快推进养老院建设。\n\n优先保障高龄特困人员的集中供养需求。\n\n32.提升文化服务。延伸服务。\n"
    ps = passages_of(text, tokenizer)
    assert [p.section for p in ps] == ["二、 31.", "二、 32."]
    assert "优先保障高龄" in ps[0].display


def test_long_clause_is_split_on_sentences_and_keeps_its_path(tokenizer):
    sentence = (
        "对脱贫人口中完全丧失劳动能力或部分丧失劳动能力且无法通过产业就业获得稳定收入的人口纳入兜底保障范围。"
    )
    text = "一、任务\n\n（二）兜底保障。" + sentence * 8 + "\n"
    ps = passages_of(text, tokenizer)
    assert len(ps) > 1
    assert {p.section for p in ps} == {"一、 （二）"}
    assert all(len(p.display) <= 300 for p in ps)
    assert all(p.display.endswith("。") for p in ps)


def test_sub_plans_of_one_file_are_part_of_the_path(tokenizer):
    text = (
        "白河县产业振兴有效衔接工作实施方案\n\n一、总体要求\n\n（一）指导思想。坚持发展。\n\n"
        "白河县稳岗就业有效衔接工作实施方案\n\n一、总体要求\n\n（一）坚持领导。健全机制。\n"
    )
    ps = passages_of(text, tokenizer)
    assert [p.section for p in ps] == [
        "白河县产业振兴有效衔接工作实施方案 一、 （一）",
        "白河县稳岗就业有效衔接工作实施方案 一、 （一）",
    ]


def test_footnote_is_attached_to_the_clause_citing_it(tokenizer):
    text = (
        "第三章 巩固成果\n\n第二节 健全监测机制\n\n建立“2531”[1]动态监测帮扶机制，实现早发现。\n\n"
        "第六章 保障措施\n\n第一节 加强组织领导\n\n认真落实领导体制。\n\n"
        "[1] 其中“2”指推行风险摸排网格化、监测预警信息化“两化管理”。\n"
    )
    ps = passages_of(text, tokenizer)
    note = next(p for p in ps if p.kind == "footnote")
    assert note.section == "第三章 第二节 注[1]"
    assert note.display.startswith("其中“2”指推行风险摸排网格化")
    assert "2531" in note.context


# -- tables --------------------------------------------------------------------------------

SEPARATOR_TABLE = (
    "专栏2-1 主要指标\n\n序号\n\t\n\n指标\n\t\n\n2020年\n\t\n\n2025年\n\t\n\n指标属性\n\n"
    "1\n\t\n\n返贫人口\n\t\n\n0\n\t\n\n动态清零\n\t\n\n约束性\n\n"
    "3\n\t\n\n脱贫人口、防止返贫监测对象基本医疗保障率（%）\n\t\n\n100\n\t\n\n95\n\t\n\n约束性\n\n"
    "第三章 扎实巩固脱贫攻坚成果\n\n严格落实“四个不摘”要求。\n"
)

TAB_TABLE = (
    "专栏1  主要指标\n\n\t序号\n\t指标\n\t2020年\n\t2025年\n\t指标属性\n\n"
    "\t3\n\t农村义务教育巩固率（%）\n\t96\n\t>97\n\t约束性\n\n"
    "\t4\n\t医疗保障巩固\n\t农村人口基本医保参保率（%）\n\t100\n\t95\n\t约束性\n\n"
    "\t\n\t\n\t标准化村卫生室比重（%）\n\t100\n\t100\n\t预期性\n\n"
    "备注：1.带*为规划期平均数。\n"
)


def test_separator_style_table_rows_carry_the_header(tokenizer):
    rows = [p for p in passages_of(SEPARATOR_TABLE, tokenizer) if p.kind == "table_row"]
    assert [r.display for r in rows] == [
        "指标：返贫人口；2020年：0；2025年：动态清零；属性：约束性",
        "指标：脱贫人口、防止返贫监测对象基本医疗保障率（%）；2020年：100；2025年：95；属性：约束性",
    ]
    assert rows[1].section == "专栏2-1 序号3"
    for r in rows:
        assert r.text == SEPARATOR_TABLE[r.start : r.end]
        assert r.text.startswith(("1", "3")) and r.text.endswith("约束性")
    body = [p for p in passages_of(SEPARATOR_TABLE, tokenizer) if p.kind != "table_row"]
    assert body[-1].section == "第三章"


def test_tab_style_table_folds_merged_category_cells(tokenizer):
    rows = [p for p in passages_of(TAB_TABLE, tokenizer) if p.kind == "table_row"]
    assert [r.display for r in rows] == [
        "指标：农村义务教育巩固率（%）；2020年：96；2025年：>97；属性：约束性",
        "指标：医疗保障巩固—农村人口基本医保参保率（%）；2020年：100；2025年：95；属性：约束性",
        "指标：医疗保障巩固—标准化村卫生室比重（%）；2020年：100；2025年：100；属性：预期性",
    ]
    assert rows[2].label == "序号4"
    for r in rows:
        assert r.text == TAB_TABLE[r.start : r.end]
        assert all(TAB_TABLE[s : s + n] in r.display for s, n in r.runs)


# -- offsets on the shipped corpus ---------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_passages(tokenizer):
    docs = load_corpus(bundled_corpus_dir())
    return docs, {d.file: passages_of(d.text, tokenizer, d.file) for d in docs}


def test_every_passage_text_is_the_source_slice(corpus_passages):
    docs, by_doc = corpus_passages
    for d in docs:
        assert by_doc[d.file], d.file
        for p in by_doc[d.file]:
            assert p.text == d.text[p.start : p.end]
            if p.kind == "table_row":
                assert all(p.start <= s and s + n <= p.end for s, n in p.runs)
            else:
                assert check_runs(d.text, p.runs, p.start, p.end, p.display)


def test_corpus_passages_are_short_and_tables_are_found(corpus_passages):
    _, by_doc = corpus_passages
    allp = [p for ps in by_doc.values() for p in ps]
    lengths = sorted(len(p.text) for p in allp)
    assert lengths[len(lengths) // 2] <= 300
    rows = [p for p in by_doc["shaanxi-province-2021-linkage-plan.txt"] if p.kind == "table_row"]
    assert len(rows) == 16
    medical = next(r for r in rows if "基本医疗保障率" in r.display)
    assert "2025年：95" in medical.display and "属性：约束性" in medical.display
    assert len([p for p in by_doc["chengkou-county-2022-linkage-plan.txt"] if p.kind == "table_row"]) == 19
