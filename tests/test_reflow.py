"""PDF lines joined back into paragraphs, headings and table rows left alone."""

from __future__ import annotations

from core.loaders.reflow import reflow


def test_chinese_lines_cut_mid_word_are_joined_without_a_space() -> None:
    text = "\n".join(
        [
            "8.3.3 随机森林的解释",
            "在 8.3.2 节开篇第一句话就解释了随机森林的概念：随机森林是 Bagging 的一个扩展变体，是以决策",
            "树为基学习器构建 Bagging 集成的基础上，进一步在决策树的训练过程中引入了随机属性选择。",
            "完整版随机森林当然更复杂，这时只须知道两个重点：以决策树为基学习器；在基学习器训练过程中，",
            "选择划分属性时只使用当前结点属性集合的一个子集。",
        ]
    )
    lines = reflow(text).split("\n")
    assert lines[0] == "8.3.3 随机森林的解释"  # the heading stays on its own line
    assert "以决策树为基学习器构建" in lines[1]  # "决策\n树" joined
    assert lines[1].endswith("随机属性选择。")  # a sentence end keeps its line break
    assert len(lines) == 3


def test_english_lines_are_joined_with_a_space_and_short_lines_kept() -> None:
    text = "\n".join(
        [
            "Escalation",
            "If the primary on-call engineer does not acknowledge a page within fifteen",
            "minutes, the secondary is paged automatically and the incident is well-",
            "documented in the tracker for the weekly review meeting with everyone.",
            "Plan | Seats | Price",
            "Enterprise | 100 | $899",
        ]
    )
    lines = reflow(text).split("\n")
    assert lines[0] == "Escalation"
    assert "within fifteen minutes, the secondary" in lines[1]
    assert "well-documented" in lines[1]
    assert lines[-2:] == ["Plan | Seats | Price", "Enterprise | 100 | $899"]


def test_a_few_lines_are_left_as_they_are() -> None:
    assert reflow("one line\nanother") == "one line\nanother"


def test_running_headers_repeated_on_most_pages_are_dropped() -> None:
    from core.loaders.pdf import without_running_lines

    header = "→_→ 欢迎去各大电商平台选购纸质版南瓜书《机器学习公式详解》 ←_←"
    pages = [
        (1, f"{header}\n8.3 Bagging 与随机森林\n正文第一页。\n1"),
        (2, f"{header}\n正文第二页，提到{header[4:10]}也没关系。\n2"),
        (3, f"{header}\n正文第三页。\n3"),
        (4, "正文第四页没有页眉。\n4"),
    ]
    cleaned = dict(without_running_lines(pages))
    assert all(header not in text for text in cleaned.values())
    assert cleaned[1].startswith("8.3 Bagging")  # content and page numbers stay
    assert cleaned[2].endswith("2")
    assert cleaned[4] == pages[3][1]


def test_a_line_on_few_pages_is_content() -> None:
    from core.loaders.pdf import without_running_lines

    pages = [(1, "Intro\nText one."), (2, "Intro\nText two."), (3, "Other\nThree."), (4, "X\nY")]
    assert without_running_lines(pages) == pages  # on 2 of 4 pages, but fewer than three
