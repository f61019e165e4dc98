"""Print the benchmark figures from benchmarks/results/*.json and write SUMMARY.md: the six
image-task figures, then the language-model section (bench_lm.py)."""

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


def step_ms(stats: dict) -> str:
    return f"{stats['median']:.0f} ms (IQR {stats['q1']:.0f}-{stats['q3']:.0f})"


def lm_lines() -> list[str]:
    """The language-model section: task=lm KD steps (bench_lm.py)."""
    lm = load("lm")
    out = ["## Language models (task=lm, `bench_lm.py`)", ""]
    if not lm:
        return out + ["not run (bench_lm.py)"]
    s, r, ms, fill = lm["settings"], lm["ratios"], lm["median_step_ms"], lm["cache_fill"]
    load_avg = lm["loadavg"]
    out.append(f"{s['student']} student, {s['teacher']} teacher ({s['teacher_dtype']}), {s['data']} "
               f"b{s['batch_size']} x T{s['seq_len']}, vocab {s['vocab']}, T={s['temperature']:g} "
               f"alpha={s['alpha']:g}, {s['optimizer']['name']} lr {s['optimizer']['lr']:g}; "
               f"{s['torch_threads']} torch thread(s) on {s['nproc']} cores, load average "
               f"{load_avg['start'][0]:.2f} -> {load_avg['end'][0]:.2f}; {lm['date']}.")
    out += ["", "| # | figure | measured | target |", "|---|---|---|---|"]
    out.append(f"| 7 | kdrun LM-KD step / hand-written, live teacher | {spread(r['kdrun_over_hand_live'])}; "
               f"{step_ms(ms['kdrun_live'])} vs {step_ms(ms['hand_live'])} | <= 1.05 |")
    out.append(f"| 8 | kdrun LM-KD step / hand-written, top-{s['topk']} cached teacher | "
               f"{spread(r['kdrun_over_hand_cached'])}; {step_ms(ms['kdrun_cached'])} vs "
               f"{step_ms(ms['hand_cached'])} | <= 1.05 |")
    even = fill.get("break_even_epochs")
    out.append(f"| 9 | LM-KD step, live teacher / cached teacher | {spread(r['live_over_cached'])}; "
               f"filling the cache {fill['s_per_1k_tokens']:.2f} s per 1k tokens (load "
               f"{fill['loadavg_before'][0]:.2f}), repaid after "
               f"{f'{even:.2f}' if even else 'n/a'} epoch(s) | (reference) |")
    out.append(f"| 10 | LM-KD step / CE-only step, cached; live | {spread(r['kd_cached_over_ce'])}; "
               f"{spread(r['kd_live_over_ce'])}; CE step {step_ms(ms['ce'])} | (reference) |")
    return out


def main() -> None:
    table = lines()
    lm = lm_lines()
    text = ("# Benchmark summary\n\nRatios measured side by side in one run each (see README.md).\n\n"
            + "\n".join(table) + "\n\n" + "\n".join(lm) + "\n")
    (RESULTS / "SUMMARY.md").write_text(text)
    print("\n".join(table))
    print()
    print("\n".join(lm))
    print(f"-> {RESULTS / 'SUMMARY.md'}")


if __name__ == "__main__":
    main()
