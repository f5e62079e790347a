"""The reviewer's evidence carries the canary's step report and the shadow comparison of the
release it is about, and never another release's."""

from __future__ import annotations

import json

from deploy import evidence


def reports(tmp_path, canary_bento: str, shadow_tag: str):
    (tmp_path / "canary.md").write_text("### Canary r0002 vs stable r0001: promoted\n")
    (tmp_path / "canary.json").write_text(json.dumps({"bento": canary_bento}))
    (tmp_path / "shadow.md").write_text("## Shadow: sales:b vs stable sales:a\n")
    (tmp_path / "shadow.json").write_text(json.dumps({"shadow": shadow_tag}))
    return tmp_path


def test_the_evidence_includes_the_canary_steps_and_shadow_comparison_of_this_release(tmp_path):
    lines = evidence.strategy("sales_api:b", "sales:b", reports(tmp_path, "sales_api:b", "sales:b"))
    text = "\n".join(lines)
    assert "### Canary r0002 vs stable r0001: promoted" in text
    assert "### Shadow: sales:b vs stable sales:a" in text


def test_the_evidence_leaves_out_reports_about_another_release(tmp_path):
    assert (
        evidence.strategy("sales_api:c", "sales:c", reports(tmp_path, "sales_api:b", "sales:b"))
        == []
    )


def test_the_evidence_without_canary_or_shadow_reports_adds_nothing(tmp_path):
    assert evidence.strategy("sales_api:b", "sales:b", tmp_path) == []
