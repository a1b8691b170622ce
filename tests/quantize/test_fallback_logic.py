"""The fallback's choices, without building anything: which layers it keeps in float first,
which round it keeps, where a per-layer report says accuracy starts to go."""

from __future__ import annotations

from deployer.parity.tensor import SNR_EXACT_DB
from deployer.quantize.fallback import round_rank, stalled
from deployer.quantize.sensitivity import first_below, rank_for_fallback


def _row(node, drop, sqnr=30.0, nodes=None):
    return {"node": node, "op": "Conv", "tensor": f"{node}:0", "nodes": nodes or [node], "sqnr_db": sqnr,
            "input_sqnr_db": sqnr + drop, "drop_db": drop}


ROWS = [_row("stem", 10.0, 50.0), _row("mid", 25.0, 25.0, ["mid_conv", "mid"]), _row("head", 3.0, 22.0),
        _row("exact", 0.0, SNR_EXACT_DB), _row("gains", -2.0, 24.0)]


def test_rank_is_by_own_drop_with_folded_nodes_and_skips_kept_and_harmless():
    assert rank_for_fallback(ROWS, []) == [["mid_conv", "mid"], ["stem"], ["head"]]
    assert rank_for_fallback(ROWS, ["mid"]) == [["stem"], ["head"]]


def test_first_below_is_in_graph_order():
    assert first_below(ROWS, 30.0)["node"] == "mid"
    assert first_below(ROWS, 20.0) is None


def _entry(verdict, reasons=(), a50=None, a5095=None, snr=None):
    parity = {"verdict": verdict, "reasons": list(reasons), "detection": {"agreement_map50": a50,
                                                                          "agreement_map50_95": a5095}}
    if snr is not None:
        parity["outputs"] = {"x": {"snr_db": snr, "cosine": 0.99}}
    return {"parity": parity}


def test_round_rank_prefers_pass_then_fewer_misses_then_figures():
    passing = _entry("pass", a50=0.91, snr=20)
    one_miss = _entry("fail", ["a"], a50=0.95, snr=30)
    two_misses = _entry("fail", ["a", "b"], a50=0.99, snr=40)
    better_figures = _entry("fail", ["a"], a50=0.96, snr=10)
    ranked = sorted([two_misses, one_miss, passing, better_figures], key=round_rank, reverse=True)
    assert ranked == [passing, better_figures, one_miss, two_misses]
    assert round_rank(_entry("fail", ["a"])) < round_rank(_entry("fail", ["a"], a50=0.1))


def test_a_collapsed_output_sends_the_heads_decoding_first_and_no_unnamed_node():
    from deployer.quantize.fallback import collapsed

    rows = [*ROWS, {**_row("concat", 1.0, 0.5, ["", "sigmoid", "concat"]), "head": True},
            {**_row("mul", 0.5, 0.4), "head": True}]
    assert rank_for_fallback(rows, [], collapsed=True)[0] == ["sigmoid", "concat", "mul"]
    assert rank_for_fallback(rows, [], collapsed=True)[1:] == [["mid_conv", "mid"], ["stem"], ["head"]]
    assert all(n for g in rank_for_fallback(rows, []) for n in g)
    ok = {"parity": {"outputs": {"y": {"cosine": 0.99, "snr_db": 25.0}}}}
    gone = {"parity": {"outputs": {"y": {"cosine": 0.99, "snr_db": 25.0}, "s": {"cosine": 0.0, "snr_db": 0.0}}}}
    assert not collapsed(ok) and collapsed(gone)


def test_the_fallback_gives_up_only_after_two_rounds_in_a_row_without_progress():
    # shortfalls: the artifact's own, then one per round, on the checks it first missed
    assert not stalled([0.057])
    assert not stalled([0.057, 0.059])                 # one round worse: try the next, larger group
    assert not stalled([0.057, 0.059, 0.054])          # the second round got closer
    assert stalled([0.057, 0.059, 0.057])              # two in a row not below the best before them
    assert not stalled([0.057, 0.050, 0.052])          # the first round's progress counts
    assert stalled([0.057, 0.050, 0.052, 0.051])
    assert stalled([0.057, 0.059], patience=1)
