"""Print the six benchmark figures from benchmarks/results/*.json and write SUMMARY.md."""

from __future__ import annotations

import json

from common import RESULTS


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def spread(stats: dict) -> str:
    return f"{stats['median']:.3f} (IQR {stats['q1']:.3f}-{stats['q3']:.3f}, {stats['rounds']} rounds)"


def lines() -> list[str]:
    out = ["| # | figure | measured | target |", "|---|---|---|---|"]
    steps, sweep, td, card = load("steps"), load("sweep"), load("torchdistill"), load("card")
    if steps:
        r = steps["ratios"]
        out.append(f"| 1 | KD step, cached teacher outputs / ce step | {spread(r['kd_cached_over_ce'])} | <= 1.15 |")
        out.append(f"| 2 | KD step, live teacher / ce step | {spread(r['kd_live_over_ce'])} | (reference) |")
        out.append(f"| 3 | kdrun KD step / hand-written loop | {spread(r['kdrun_over_handwritten'])} | <= 1.05 |")
    else:
        out.append("| 1-3 | step ratios | not run (bench_steps.py) | |")
    if sweep:
        out.append(f"| 4 | 5x5 sweep: one by one / kdrun | {sweep['speedup']:.2f}x faster (per chunk "
                   f"{sweep['per_chunk']['min']:.2f}-{sweep['per_chunk']['max']:.2f}) | >= 3x |")
    else:
        out.append("| 4 | sweep speed-up | not run (bench_sweep.py) | |")
    if td and "step_ratio" in td:
        out.append(f"| 5 | kdrun step / torchdistill step | {spread(td['step_ratio'])}; top-1 kdrun "
                   f"{td['top1']['kdrun']:.2f} vs torchdistill {td['top1']['torchdistill']:.2f} | (comparison) |")
    else:
        out.append("| 5 | kdrun vs torchdistill | not run (bench_torchdistill.py) | |")
    if card:
        p = card["parts"]
        out.append(f"| 6 | card command `{card['command']}`, cold start | {card['wall_s']:.0f} s (teacher "
                   f"{p['teacher_train_s']:.0f} s, student {p['student_train_s']:.0f} s, start-up "
                   f"{p['to_first_log_s'] or 0:.0f} s, other {p['other_s']:.0f} s; load "
                   f"{card['loadavg_start'][0]:.1f} -> {card['loadavg_end'][0]:.1f}); teacher {card['teacher_top1']:.2f}%, student "
                   f"{card['best_student_top1']:.2f}% | <= 120 s, teacher >= 95% |")
    else:
        out.append("| 6 | card command | not run (bench_card.py) | |")
    return out


def main() -> None:
    table = lines()
    text = "# Benchmark summary\n\nRatios measured side by side in one run each (see README.md).\n\n" + "\n".join(table) + "\n"
    (RESULTS / "SUMMARY.md").write_text(text)
    print("\n".join(table))
    print(f"-> {RESULTS / 'SUMMARY.md'}")


if __name__ == "__main__":
    main()
