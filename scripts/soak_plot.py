"""scripts/soak_plot.py SOAK_CSV PNG — the end of scripts/soak.sh.

Reads the per-minute rows soak.sh wrote (tokens/s, p50/p99, failed requests by code, memory and
open descriptors of the router and each worker), prints a summary, draws PNG when matplotlib is
importable (four panels over time: tokens/s, latency, router memory and descriptors, worker
memory) and exits 1 on any failed request, or when the router's memory or descriptors grew more
than 10 % between minute 5 (or the last, if fewer) and the end.
"""
import csv
import sys


def main(csv_path: str, png_path: str) -> int:
    rows = list(csv.DictReader(open(csv_path)))
    if not rows:
        print("soak: no minutes recorded")
        return 1
    failed = sum(int(r["failed"]) for r in rows)
    codes: dict = {}
    for r in rows:
        for item in r["errors_by_code"].split():
            if "=" in item:
                code, n = item.split("=")
                codes[code] = codes.get(code, 0) + int(n)
    base = rows[min(4, len(rows) - 1)]
    rss0, rss1 = float(base["router_rss_mb"]), float(rows[-1]["router_rss_mb"])
    fds0, fds1 = int(base["router_fds"]), int(rows[-1]["router_fds"])
    p99 = sorted(float(r["p99_ms"]) for r in rows)
    print(f"soak: {len(rows)} minutes at {rows[0]['offered_rps']} requests/s offered, {failed} failed requests "
          f"({' '.join(f'{k}={v}' for k, v in codes.items()) or 'none'}); per-minute p99 {p99[0]:.2f}-{p99[-1]:.2f} ms; "
          f"router memory {rss0:.1f} MB at minute {base['minute']} -> {rss1:.1f} MB ({(rss1 - rss0) / rss0 * 100:+.1f} %), "
          f"descriptors {fds0} -> {fds1}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("soak: matplotlib not importable here, no plot")
    else:
        minute = [int(r["minute"]) for r in rows]
        fig, ax = plt.subplots(2, 2, figsize=(11, 7))
        ax[0][0].plot(minute, [float(r["tokens_per_s"]) for r in rows], marker="o")
        ax[0][0].set(title="served tokens/s (offered 70 % of capacity)", xlabel="minute", ylim=(0, None))
        ax[0][1].plot(minute, [float(r["p50_ms"]) for r in rows], marker="o", label="p50")
        ax[0][1].plot(minute, [float(r["p99_ms"]) for r in rows], marker="o", label="p99")
        ax[0][1].set(title="latency per minute (a worker lost each minute)", xlabel="minute",
                     ylabel="ms", ylim=(0, None))
        ax[0][1].legend()
        ax[1][0].plot(minute, [float(r["router_rss_mb"]) for r in rows], marker="o", color="C2", label="RSS MB")
        ax[1][0].set(title="router: memory and open descriptors", xlabel="minute", ylabel="RSS MB", ylim=(0, None))
        fd_axis = ax[1][0].twinx()
        fd_axis.plot(minute, [int(r["router_fds"]) for r in rows], marker="x", color="C3", label="open fds")
        fd_axis.set(ylabel="open fds", ylim=(0, None))
        ax[1][0].legend(handles=ax[1][0].get_lines() + fd_axis.get_lines(), loc="lower right")
        for w in range(3):
            ax[1][1].plot(minute, [float(r[f"w{w}_rss_mb"]) for r in rows], marker="o", label=f"worker {w}")
        ax[1][1].set(title="workers (restarted in turn)", xlabel="minute", ylabel="RSS MB", ylim=(0, None))
        ax[1][1].legend()
        fig.suptitle(f"moe-serve soak: {len(rows)} min, {failed} failed requests")
        fig.tight_layout()
        fig.savefig(png_path, dpi=90)
        print(f"soak: plot in {png_path}")
    grew = rss1 > 1.10 * rss0 or fds1 > 1.10 * fds0 + 2
    return 1 if failed > 0 or grew else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
