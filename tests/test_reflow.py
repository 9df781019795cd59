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
