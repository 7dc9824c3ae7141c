"""The ``suite`` command. Heavy imports (torch, mmengine) happen inside the commands, so ``--help`` is instant."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from sema_suite.errors import SuiteError
from sema_suite.running.backends import add_arguments as add_backend_arguments

DEFAULT_RESULTS = Path("results")
DEFAULT_DATA = Path("data")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in _csv(text)]
    except ValueError:
        seeds = []
    if not seeds or any(seed < 0 for seed in seeds):
        raise argparse.ArgumentTypeError(f"seeds are whole numbers >= 0 separated by commas (e.g. 0,1,2), got {text!r}")
    return seeds


def _selections(text: str) -> list[str]:
    chosen = _csv(text)
    if unknown := [s for s in chosen if s not in ("shipped", "tuned")]:
        raise argparse.ArgumentTypeError(f"unknown selection {', '.join(unknown)}: give shipped, tuned or both "
                                         "(shipped,tuned)")
    return chosen


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return int(text)


def _interval(text: str) -> dict[str, float]:
    """``--checkpoint-every``: ``500`` (iterations), ``90s``, ``30m`` or ``2h`` (wall time since the last checkpoint),
    or ``eval`` (at each evaluation interval only)."""
    text = text.strip().lower()
    if text == "eval":
        return {"eval": True}
    unit = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(text[-1:])
    try:
        value = float(text[:-1]) if unit else int(text)
    except ValueError:
        value = 0
    if value <= 0 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r}: give iterations (500), seconds, minutes or hours of training "
                                         "(90s, 30m, 2h), or eval")
    return {"seconds": value * unit} if unit else {"iters": value}


def cmd_run(args: argparse.Namespace) -> int:
    from sema_suite.analysis.measure import Settings
    from sema_suite.results import leaderboard
    from sema_suite.results.reading import read_results
    from sema_suite.running import tracking
    from sema_suite.running.backends import make_backend
    from sema_suite.running.jobs import expand_matrix, parse_overrides
    from sema_suite.running.runs import plan, retrained_notes
    from sema_suite.running.scheduler import job_outcomes, pending, prepare

    if args.plan is not None:
        from sema_suite.running.plans import expand_plan

        given = [flag for flag, value in (("--task", args.task), ("--method", args.method), ("--preset", args.preset),
                                          ("--seeds", args.seeds), ("--set", args.set)) if value]
        if given:
            raise SuiteError(f"--plan names the jobs; drop {', '.join(given)} (or edit {args.plan})")
        matrix = expand_plan(args.plan, args.gpus_per_job)
    else:
        matrix = expand_matrix(args.task or ["cls"], args.method or ["none", "ema", "sema"], args.seeds or [0],
                               args.preset, parse_overrides(args.set), args.gpus_per_job)
    jobs = matrix.jobs
    todo_jobs, skipped = pending(jobs, args.results_dir)
    runs = plan(todo_jobs, share=not args.no_share)
    if args.dry_run:
        from sema_suite.running.dry_run import dry_run

        for job in jobs:
            print(dry_run(job, args.results_dir, args.data_root))
        print(matrix.describe())
        print(_describe_runs(runs))
        return 0
    for note in [*matrix.notes, *retrained_notes(runs, jobs, args.results_dir)]:
        print(note, file=sys.stderr)
    for job in jobs:  # before anything is built or written: is the data there?
        job.task.check_data(job.preset, job.context(args.data_root, args.results_dir / job.job_id, args.download))
    backend = make_backend(args)  # before anything is written: is the backend usable here?
    if args.backend == "local" and any(job.params.get("amp", "none") != "none" for job in jobs):
        import torch

        if not torch.cuda.is_available():
            raise SuiteError("--set amp=... trains in mixed precision on a GPU, and CUDA sees none here: drop it, "
                             "or run where there is one")
    analysis = Settings.parse(args.analyze).as_dict() if args.analyze is not None else None
    if analysis and analysis["every_eval"] and args.gpus_per_job > 1:
        raise SuiteError("--analyze every_eval measures during training in one process; a job on several "
                         "(--gpus-per-job) is measured at its end: drop every_eval")
    log_to = tracking.check(args.log_to)
    todo = _prepare(args.results_dir, lambda: prepare(runs, args.results_dir, args.data_root, args.download, analysis,
                                                    log_to, args.checkpoint_every))
    print(f"{len(jobs)} job(s): {len(todo_jobs)} to run, {len(skipped)} already done; "
          f"{_describe_runs(runs)}; results in {args.results_dir}/", file=sys.stderr)
    outcomes = skipped + job_outcomes(backend.run(todo), args.results_dir)
    counts = {state: sum(o.state == state for o in outcomes) for state in ("done", "skipped", "failed")}
    print("\n" + ", ".join(f"{n} {state}" for state, n in counts.items() if n))
    for outcome in outcomes:
        if outcome.error:
            print(f"  {outcome.state}: {outcome.job_id}: {outcome.error}")
    if analysis is not None and (failed := _analysis_pass(jobs, args.results_dir, Settings(**analysis), backend)):
        for job_id, error in failed:
            print(f"  analysis failed: {job_id}: {error}")
        counts["failed"] += len(failed)
    reading = read_results(args.results_dir, [job.job_id for job in jobs])
    table = leaderboard.aggregate(reading.rows, leaderboard.primary_metrics(reading.rows))
    if table:
        print("\n" + leaderboard.format_table(table))
    for note in [*leaderboard.edge_notes(table), *filter(None, [leaderboard.printed_table_note(table)])]:
        print(f"note: {note}")
    for warning in [*reading.warnings(), *leaderboard.provenance_warnings(leaderboard.used_environments(reading))]:
        print(f"warning: {warning}")
    return 1 if counts["failed"] else 0


def _describe_runs(runs: list) -> str:
    """``7 job(s) to run in 4 training run(s) (1 shared by 4 jobs)``."""
    shared = [run for run in runs if run.shared]
    jobs = sum(len(run.members) for run in runs)
    text = f"{jobs} job(s) to run in {len(runs)} training run(s)"
    if shared:
        text += f" ({len(shared)} shared by {sum(len(run.members) for run in shared)} none/ema jobs; --no-share: one each)"
    return text


def _measure(jobs: list, settings, backend) -> list[tuple[str, str]]:
    """Run the analysis of ``jobs`` (finished, with weights) on ``backend``; the (job id, error) that failed."""
    from sema_suite.analysis.measure import failure, pending
    from sema_suite.results.store import read_json, write_json

    for job in jobs:
        write_json(job.job_json, {**read_json(job.job_json), "analysis": settings.as_dict()})
    backend.run(jobs)
    return [(job.job_id, failure(job) or "not measured") for job in jobs
            if pending(job, read_json(job.job_json), settings)]


def _analysis_pass(jobs: list, results_dir: Path, settings, backend) -> list[tuple[str, str]]:
    """After a ``suite run --analyze`` matrix: measure what its finished jobs still lack -- the jobs that were
    done before this run, and the interpolation of each ``sema`` job (of the matrix, or already in the results)
    with its ``none``/``ema`` partners from the matrix, which may have finished after it."""
    from sema_suite.analysis.interpolation import partner_ids
    from sema_suite.analysis.measure import pending
    from sema_suite.results.reading import finished_jobs
    from sema_suite.results.store import JobDir, read_json

    ids = {job.job_id for job in jobs}
    folders = [JobDir(results_dir, job_id) for job_id in sorted(ids)]
    folders += [job for job in finished_jobs(results_dir) if job.job_id not in ids
                and read_json(job.job_json)["spec"]["method"] == "sema"
                and ids & set(partner_ids(read_json(job.job_json)))]
    todo = [f for f in folders if f.status().get("state") == "done" and f.last_checkpoint() is not None
            and pending(f, read_json(f.job_json), settings)]
    if todo:
        print(f"analysing {len(todo)} finished job(s) (earlier jobs, interpolation of sema jobs)", file=sys.stderr)
    return _measure(todo, settings, backend) if todo else []


def cmd_analyze(args: argparse.Namespace) -> int:
    from sema_suite.analysis.measure import Settings, pending
    from sema_suite.results.reading import finished_jobs
    from sema_suite.results.store import read_json
    from sema_suite.running.backends import make_backend

    settings = Settings.parse(args.set)
    if settings.every_eval:
        raise SuiteError("every_eval measures during training, and finished jobs keep only their final weights: "
                         "use `suite run --analyze every_eval=N` (drop it here)")
    jobs = [job for job in finished_jobs(args.results_dir) if not args.jobs or job.job_id in args.jobs]
    docs = {job.job_id: read_json(job.job_json) for job in jobs}  # each job.json read once, for every filter below
    jobs = [job for job in jobs if not args.task or docs[job.job_id]["spec"]["task"] in args.task]
    if args.selection:  # chosen over every seed, as the leaderboard chooses, before --seeds narrows it
        from sema_suite.results.leaderboard import load, selected_jobs

        chosen = selected_jobs(load(args.results_dir, [job.job_id for job in jobs]), args.selection)
        jobs = [job for job in jobs if job.job_id in chosen]
    if args.seeds is not None:
        jobs = [job for job in jobs if int(docs[job.job_id]["spec"]["seed"]) in args.seeds]
    if args.jobs and (unknown := set(args.jobs) - {job.job_id for job in jobs}):
        raise SuiteError(f"no finished job {', '.join(sorted(unknown))} under {args.results_dir}/ "
                         "(`suite run` it first, or check the id)")
    if not jobs:
        chosen = [f"{flag} {','.join(map(str, value))}" for flag, value in
                  (("--task", args.task), ("--seeds", args.seeds or []), ("--selection", args.selection)) if value]
        raise SuiteError(f"no finished jobs{' of ' + ' '.join(chosen) if chosen else ''} under "
                         f"{args.results_dir}/ to analyse; run `suite run` first"
                         f"{', or widen ' + ' '.join(chosen) if chosen else ''}")
    measured = [job for job in jobs if not pending(job, docs[job.job_id], settings)]
    weightless = [job for job in jobs if job not in measured and job.last_checkpoint() is None]
    todo = [job for job in jobs if job not in measured and job not in weightless]
    backend = make_backend(args)
    print(f"{len(jobs)} finished job(s): {len(todo)} to measure, {len(measured)} already measured"
          f"{f', {len(weightless)} without weights (no checkpoint: re-run them to measure)' if weightless else ''}",
          file=sys.stderr)
    failed = _measure(todo, settings, backend)
    print(f"\n{len(todo) - len(failed)} measured, {len(failed)} failed; the rows are in each job's analysis.csv "
          "(and a sema job's barriers.csv) and in `suite leaderboard` (splits train and val)")
    for job_id, error in failed:
        print(f"  failed: {job_id}: {error}")
    return 1 if failed else 0


def _check_out(out: Path) -> None:
    """An output file goes into a folder that exists: a typo in ``--out`` never creates folders."""
    if not out.parent.is_dir():
        raise SuiteError(f"{out}: its folder {out.parent}/ does not exist; create it first or write elsewhere")
    if out.is_dir():
        raise SuiteError(f"{out} is a folder: give a file name")


def _prepare(results_dir: Path, prepare: Callable[[], list]) -> list:
    """``prepare()``, which writes the jobs' files under ``results_dir``: a folder that is a file or cannot be
    written is one clear error, before any job starts."""
    if results_dir.exists() and not results_dir.is_dir():
        raise SuiteError(f"--results-dir {results_dir} is a file, not a folder: give a folder (it is made if absent)")
    try:
        return prepare()
    except OSError as err:
        raise SuiteError(f"cannot write the jobs' files under {results_dir}/ ({err.strerror}: {err.filename}): give "
                         "a --results-dir you can write to, or fix its permissions") from None


def cmd_export(args: argparse.Namespace) -> int:
    from sema_suite.method.checkpoints import export

    _check_out(args.out)
    weights, tensors = export(args.results_dir, args.job, args.weights, args.out)
    print(f"wrote the {weights} weights of {args.job} ({tensors} tensors, a plain state dict) to {args.out}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from sema_suite.method.methods import method_names
    from sema_suite.results import leaderboard, versus
    from sema_suite.results.reading import Reading, read_results

    if args.versus and args.versus not in method_names():
        raise SuiteError(f"--versus {args.versus}: no such method; choose one of {', '.join(method_names())} "
                         "(`suite list` describes them)")
    folders = args.results_dir or [DEFAULT_RESULTS]
    _check_out(args.out)
    reading = Reading()
    for folder in folders:
        reading += read_results(folder)
    rows = reading.rows
    for message in reading.warnings():
        print(f"suite: warning: {message}", file=sys.stderr)
    if not rows:
        found = f"{len(reading.seen)} job(s), none done with readable rows" if reading.seen else "no finished jobs"
        raise SuiteError(f"{found} under {', '.join(f'{f}/' for f in folders)}; run `suite run` first (the existing "
                         f"{args.out} is left as it is)")
    warnings = [*leaderboard.conflicts(rows), *leaderboard.tuning_warnings(rows),
                *leaderboard.provenance_warnings(leaderboard.used_environments(reading))]
    for message in warnings:
        print(f"suite: warning: {message}", file=sys.stderr)
    table = leaderboard.aggregate(rows, leaderboard.primary_metrics(rows))
    for note in [*leaderboard.edge_notes(table), *filter(None, [leaderboard.printed_table_note(table)])]:
        print(f"suite: note: {note}", file=sys.stderr)
    leaderboard.write(table, args.out)
    print(leaderboard.format_markdown(table) if args.markdown else leaderboard.format_table(table))
    if args.versus:
        pairs = versus.head_to_head(rows, args.versus, leaderboard.primary_metrics(rows))
        print(f"\n{args.versus} against every other method (tuned, test, paired by seed):\n\n"
              f"{versus.format_markdown(pairs)}" if pairs else
              f"\nno tuned {args.versus} shares a task and training setting with another tuned method: nothing "
              "to set it against (run the others on the same seeds, or drop --versus)")
    print(f"\nwrote {len(table)} rows to {args.out}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from sema_suite.method.methods import get_method, method_names
    from sema_suite.registry import get_task, task_names

    print("methods (their knobs: --set KEY=VALUE, or KEY=A,B,C to sweep; an epoch of an iteration-based loop is "
          "one pass over the training data):")
    for name in method_names():
        method = get_method(name)
        print(f"  {name}: {method.summary}")
        for key, knob in method.knobs.items():
            print(f"    {key}={knob.default}: {knob.help}")
    for name in task_names():
        task = get_task(name)
        print(f"\ntask {name}: {task.description}")
        print("  metrics: " + ", ".join(
            f"{m.name} ({'higher' if m.higher_is_better else 'lower'} is better{', primary' if m.primary else ''})"
            for m in task.metrics))
        for preset in task.presets.values():
            default = " (default)" if preset.name == task.default_preset else ""
            print(f"  preset {preset.name}{default}: {preset.description}")
            print("    params: " + ", ".join(f"{k}={v}" for k, v in preset.knobs.items()))
            if preset.averaging:
                print("    averaging: " + ", ".join(f"{k}={v}" for k, v in preset.averaging.items()))
            if preset.optimizers:
                print("    other optimizers (--set optimizer=...): " + "; ".join(
                    f"{name} " + ", ".join(f"{k}={v}" for k, v in row.items()) for name, row in preset.optimizers.items()))
            if preset.primary_metric:
                print(f"    primary metric: {preset.primary_metric}")
    return 0


def dashboard_command(results_dir: Path, port: int, host: str) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` command line and environment behind ``suite dashboard``.

    The app is the installed ``sema_dashboard`` package's (in a checkout, its ``dashboard/`` folder) and finds the
    results through ``SUITE_RESULTS_DIR``. Streamlit is not imported here.
    """
    import importlib.util
    import os

    if importlib.util.find_spec("streamlit") is None:
        raise SuiteError("the dashboard needs Streamlit and Altair: pip install 'sema-bench[dashboard]'")
    app = Path(importlib.util.find_spec("sema_dashboard").origin).parent / "app.py"
    env = {**os.environ, "SUITE_RESULTS_DIR": str(results_dir.resolve())}
    argv = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer"]
    return argv, env


def cmd_dashboard(args: argparse.Namespace) -> int:
    import os

    argv, env = dashboard_command(args.results_dir, args.port, args.host)
    print(f"SEMA Bench dashboard for {args.results_dir.resolve()}/ at http://{args.host}:{args.port} (Ctrl-C stops it)",
          file=sys.stderr)
    sys.stderr.flush()
    os.execve(argv[0], argv, env)  # becomes the server: Ctrl-C and signals reach Streamlit directly


def cmd_gpu_check(args: argparse.Namespace) -> int:
    from sema_suite.bench.gpu_check import check, paper_presets, report

    results, skipped, device = check(paper_presets(args.presets), args.iters, args.batch_size)
    print(report(results, skipped, device))
    return 1 if any("error" in r or r["switches"] == 0 or "error" in (r.get("analysis") or {}) for r in results) else 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "dashboard":
        from sema_suite.bench.dashboard import bench_dashboard

        bench_dashboard(args.jobs, args.epochs)
        return 0
    if args.what == "matrix":
        from sema_suite.bench.matrix import bench_matrix

        bench_matrix(args.task, _csv(args.decays), args.seeds, args.workers, args.set)
        return 0
    from sema_suite.bench.update import bench_ema, bench_step

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run = bench_ema if args.what == "ema" else bench_step
    run(models=args.models, device=args.device, repeats=args.repeats)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="suite", description="SEMA Bench: Switch EMA vs EMA vs plain training.")
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a matrix of jobs (tasks x methods x seeds)")
    run.add_argument("--task", type=_csv, help="task(s), comma-separated (default: cls)")
    run.add_argument("--method", type=_csv, help="none,ema,sema (default: all)")
    run.add_argument("--preset", default=None, help="preset of each task (default: the task's default, tiny)")
    run.add_argument("--seeds", type=_seeds, help="seeds, comma-separated (default: 0)")
    run.add_argument("--plan", type=Path, help="a plan file naming the jobs instead of the five options above "
                                                "(e.g. plans/long.toml: the published long tier)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a preset or averaging parameter (see `suite list`), or cfg.<mmengine key>; "
                     "a comma list sweeps it (decay=0.9,0.95)")
    run.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    run.add_argument("--data-root", type=Path, default=DEFAULT_DATA, help="where paper-scale datasets live")
    run.add_argument("--download", action="store_true", help="download datasets that allow it into --data-root")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--gpus", type=_csv, help="GPU ids, one worker pinned to each (e.g. 0,1)")
    where.add_argument("--workers", type=_positive, default=1, help="number of CPU worker processes (default: 1)")
    add_backend_arguments(run)
    run.add_argument("--no-share", action="store_true",
                     help="one training run per job; by default a none job and every ema job of the same seed and "
                     "training knobs share one run (ema does not change training), which evaluates each in turn")
    run.add_argument("--dry-run", action="store_true",
                     help="print each job's full config and build its model, then the expanded job list and its size")
    run.add_argument("--analyze", nargs="*", metavar="KEY=VALUE",
                     help="measure flatness and sharpness at the end of each job and interpolate sema jobs with "
                     "their partners (see `suite analyze`), with optional analysis knobs; every_eval=N also "
                     "measures at every N-th evaluation")
    run.add_argument("--log-to", type=_csv, default=[], metavar="TRACKERS",
                     help="also log every job to these trackers: tensorboard, mlflow, wandb (comma list; needs the "
                     "track extra). MLFLOW_TRACKING_URI and WANDB_MODE/WANDB_PROJECT are honoured")
    run.add_argument("--checkpoint-every", type=_interval, metavar="N|Ss|Mm|Hh|eval",
                     help="how much work a kill may lose: a checkpoint once this much wall time has passed since the "
                     "last (90s, 30m, 2h; default 60s), or every N iterations and at each evaluation (2000), or at "
                     "each evaluation only (eval); always one at the end")
    run.set_defaults(func=cmd_run)

    analyze = sub.add_parser("analyze", help="measure flatness and sharpness of finished jobs' reported weights")
    analyze.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    analyze.add_argument("--task", type=_csv, default=[], help="only these tasks (default: all)")
    analyze.add_argument("--jobs", type=_csv, default=[], help="only these job ids")
    analyze.add_argument("--seeds", type=_seeds, help="only these seeds (default: all)")
    analyze.add_argument("--selection", type=_selections, default=[],
                         help="only the jobs behind the leaderboard's shipped and/or tuned rows (shipped,tuned): "
                         "each method as shipped, and its val-tuned variant in each training setting")
    analyze.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="analysis knobs: batches, seed, eigenvalues, eig_tol, trace_samples, rho, rho_adaptive, "
                         "rho_average, steps, average_samples, directions, points, span, interpolation_points (see the README)")
    where = analyze.add_mutually_exclusive_group()
    where.add_argument("--gpus", type=_csv, help="GPU ids, one worker pinned to each (e.g. 0,1)")
    where.add_argument("--workers", type=_positive, default=1, help="number of CPU worker processes (default: 1)")
    add_backend_arguments(analyze)
    analyze.set_defaults(func=cmd_analyze)

    export = sub.add_parser("export", help="write a finished job's weights as a plain state dict (torch.save)")
    export.add_argument("job", help="the job id")
    export.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    export.add_argument("--weights", choices=["averaged", "trained"],
                        help="default: the weights the job reports (averaged for ema/sema, trained for none)")
    export.add_argument("-o", "--out", type=Path, required=True, help="the .pth file to write")
    export.set_defaults(func=cmd_export)

    board = sub.add_parser("leaderboard", help="aggregate finished jobs over seeds into a CSV")
    board.add_argument("--results-dir", type=Path, action="append",
                       help="a results folder, or a parent of tiers (published/); repeat it to join several "
                            f"(default: {DEFAULT_RESULTS})")
    board.add_argument("--out", type=Path, default=Path("leaderboard.csv"))
    board.add_argument("--markdown", action="store_true",
                       help="print each task's primary metric on the test split as a Markdown table (the README's)")
    board.add_argument("--versus", metavar="METHOD",
                       help="also print METHOD's tuned variant against every other method's, paired by seed, on "
                            "the test split's primary metric (e.g. --versus sema; the CSV is the same without it)")
    board.set_defaults(func=cmd_leaderboard)

    lst = sub.add_parser("list", help="tasks, presets, methods and metrics")
    lst.set_defaults(func=cmd_list)

    dash = sub.add_parser("dashboard", help="browse results: curves, leaderboards, job status (Streamlit)")
    dash.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    dash.add_argument("--port", type=int, default=8501)
    dash.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only; "
                      "0.0.0.0 exposes it to the network)")
    dash.set_defaults(func=cmd_dashboard)

    gpu = sub.add_parser("gpu-check", help="every paper preset for a few iterations on stand-in data: speed, "
                         "memory, the averaging hook's share, whether the switch fires (CUDA; what it can on a CPU)")
    gpu.add_argument("--presets", type=_csv, default=[], help="task/preset or task, comma-separated (default: all)")
    gpu.add_argument("--iters", type=_positive, help="training iterations per case (default: 30 on CUDA, 3 on a CPU)")
    gpu.add_argument("--batch-size", type=_positive,
                     help="batch per GPU (default: each preset's on CUDA, 2 on a CPU)")
    gpu.set_defaults(func=cmd_gpu_check)

    bench = sub.add_parser("bench", help="time the averaging update, its share of a training step, shared runs, "
                           "the dashboard")
    bench.add_argument("what", choices=["ema", "step", "matrix", "dashboard"],
                       help="ema: one update against other implementations; step: averaging's share of a training "
                       "step; matrix: a none,ema,sema matrix with a decay sweep, shared runs against one run per job; "
                       "dashboard: each view's render time over synthetic finished jobs, cold and warm")
    bench.add_argument("--models", type=_csv, default=["resnet18", "resnet50"])
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--repeats", type=int, default=30)
    bench.add_argument("--threads", type=int, help="torch CPU threads (1 avoids thread-barrier stalls on a busy machine)")
    bench.add_argument("--task", default="cls", help="matrix: the task (tiny preset unless --set says otherwise)")
    bench.add_argument("--decays", default="0.9,0.95,0.99", help="matrix: the decay sweep of ema and sema")
    bench.add_argument("--seeds", default="0", help="matrix: seeds, comma-separated")
    bench.add_argument("--workers", type=_positive, default=1, help="matrix: CPU worker processes")
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="matrix: more overrides")
    bench.add_argument("--jobs", type=lambda text: [_positive(x) for x in _csv(text)], default=[200, 1000],
                       help="dashboard: numbers of synthetic jobs, comma-separated")
    bench.add_argument("--epochs", type=_positive, default=100, help="dashboard: evaluations per synthetic job")
    bench.set_defaults(func=cmd_bench)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SuiteError as err:
        print(f"suite: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nsuite: interrupted; re-run the same command to resume where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
