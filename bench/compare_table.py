#!/usr/bin/env python3
"""The table of bench/compare.sh, from the JSON reports it kept.

Layout read: RESULTS/<placement>/<scenario>/<generator>-<broker>.json (and
<generator>.na with a reason when the generator cannot express the
scenario). Prints a text table on stdout and writes the same rows as
markdown to --markdown.

What each column means:
- delivered msg/s: `millwright bench` load.received_per_sec (deliveries
  summed over subscribers in the measured window); `mqttv5 bench`
  results.throughput_avg (its per-second delivery samples, 10% trimmed at
  each end).
- acked, not delivered: QoS >= 1 only. `millwright bench`:
  load.acked_not_delivered, counted per message. `mqttv5 bench`: derived,
  max(0, published x subscribers - received) from its totals (its
  `published` at QoS 1 counts PUBACKs without an error reason; its
  subscribers all receive every publisher's topic).
- verdict: "met" when Millwright/Mosquitto >= 2 and, at QoS >= 1,
  Millwright lost no acknowledged message; the persistent-session row
  compares with Millwright's clean-session q1-4-4 of the same cell (>= 0.5);
  the latency row needs Millwright's p99 under 5 ms.
"""

import argparse
import json
import math
import os
import sys

TITLES = {
    "q0-1-1": ("QoS 0 1:1", 0),
    "q0-4-4": ("QoS 0 4:4", 0),
    "q1-4-4": ("QoS 1 4:4", 1),
    "fanin-1000": ("fan-in 1000:1", None),
    "fanout-50": ("fan-out 1:50", None),
    "fanout-1000": ("fan-out 1:1000", None),
    "persist-q1-4-4": ("persistent QoS 1 4:4", 1),
    "latency-q0-1-1": ("p99 latency QoS 0 1:1 at half our saturation", 0),
}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return {}


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except Exception:
        return None


class Run:
    """One generator's figures against one broker."""

    def __init__(self, gen, d, qos):
        self.ok = bool(d)
        self.rate = None
        self.loss = None
        self.p99_ms = None
        self.target = None
        self.note = ""
        if not d:
            return
        if gen == "millwright":
            l = d.get("load") or {}
            self.rate = l.get("received_per_sec")
            if qos:
                self.loss = l.get("acked_not_delivered")
                if l.get("subscribers_disconnected"):
                    self.note += f" {l['subscribers_disconnected']} subscribers disconnected;"
                if l.get("unacked"):
                    self.note += f" {l['unacked']:,} unacknowledged;"
                if l.get("refused_total"):
                    share = l["refused_total"] / max(1, l.get("sent_total", 0))
                    self.note += f" {l['refused_total']:,} publishes refused ({share:.0%} of sent);"
            self.target = d.get("rate_target") or None
            lat = l.get("latency") or {}
            if lat.get("samples"):
                self.p99_ms = lat.get("p99_us", 0) / 1000
            other = (d.get("errors") or 0) - (l.get("refused_total") or 0)
            if other > 0:
                self.note += f" {other:,} errors ({'; '.join(d.get('error_samples', [])[:2])});"
        else:
            r = d.get("results") or {}
            if "throughput_avg" in r:
                self.rate = r["throughput_avg"]
                subs = (d.get("config") or {}).get("subscribers", 1)
                if qos:
                    self.loss = max(0, r.get("published", 0) * subs - r.get("received", 0))
            if "p99_us" in r:
                self.p99_ms = r["p99_us"] / 1000
                self.target = (d.get("config") or {}).get("rate") or None
                self.rate = r.get("messages", 0) / max(1, (d.get("config") or {}).get("duration_secs", 1))


def fmt_rate(v):
    return "n/a" if v is None else f"{v:,.0f}"


def fmt_loss(v):
    return "–" if v is None else f"{v:,}"


def fmt_ms(v):
    return "–" if v is None else f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--scenarios", required=True)
    ap.add_argument("--generators", required=True)
    ap.add_argument("--placements", required=True)
    ap.add_argument("--fan-qos", type=int, default=1)
    ap.add_argument("--markdown")
    ap.add_argument("--header", default="")
    a = ap.parse_args()

    head = ["scenario", "generator", "placement", "Millwright msg/s", "Mosquitto msg/s",
            "ratio", "acked, not delivered (Millwright / Mosquitto)",
            "p99 ms (Millwright / Mosquitto)", "verdict"]
    rows = []
    for place in a.placements.split(","):
        for scen in a.scenarios.split(","):
            title, qos = TITLES.get(scen, (scen, None))
            if qos is None:
                qos = a.fan_qos
                title = f"{title}, QoS {qos}"
            for gen in a.generators.split(","):
                base = os.path.join(a.results, place, scen)
                na = read_text(os.path.join(base, f"{gen}.na"))
                if na is not None:
                    rows.append([title, gen, place, "n/a", "n/a", "", "", "", f"n/a: {na}"])
                    continue
                mw = Run(gen, load(os.path.join(base, f"{gen}-millwright.json")), qos)
                mq = Run(gen, load(os.path.join(base, f"{gen}-mosquitto.json")), qos)
                crashed = [b for b in ("millwright", "mosquitto")
                           if os.path.exists(os.path.join(base, f"{gen}-{b}.json.crashed"))]
                ratio = None
                if scen.startswith("latency"):
                    if mw.p99_ms and mq.p99_ms:
                        ratio = mq.p99_ms / mw.p99_ms
                    short = [b for b, r in (("Millwright", mw), ("Mosquitto", mq))
                             if r.target and r.rate is not None and r.rate < 0.9 * r.target]
                    if mw.p99_ms is None:
                        verdict = "failed: no latency figure"
                    elif "Millwright" in short:
                        verdict = (f"invalid: the generator reached {mw.rate:,.0f} of "
                                   f"{mw.target:,} msg/s (its own backlog is in the p99)")
                    elif mw.p99_ms < 5:
                        verdict = "met (p99 < 5 ms)"
                    else:
                        verdict = f"not met: p99 {mw.p99_ms:.2f} ms"
                    if "Mosquitto" in short:
                        verdict += f"; Mosquitto reached {mq.rate:,.0f} of {mq.target:,} msg/s"
                    ratio_s = "n/a" if ratio is None else f"{ratio:.2f}x lower"
                    rate_note = " (paced rate)"
                else:
                    rate_note = ""
                    if mw.rate is not None and mq.rate:
                        ratio = mw.rate / mq.rate
                    # Truncated, not rounded: 1.9996 must not read as 2.00.
                    ratio_s = "n/a" if ratio is None else f"{math.floor(ratio * 100) / 100:.2f}"
                    lost = qos and (mw.loss is None or mw.loss > 0)
                    if scen.startswith("persist"):
                        clean = Run(gen, load(os.path.join(a.results, place, "q1-4-4",
                                                           f"{gen}-millwright.json")), 1)
                        share = (mw.rate / clean.rate) if (mw.rate is not None and clean.rate) else None
                        if share is None:
                            verdict = "n/a: no clean-session q1-4-4 figure"
                        elif share >= 0.5 and not lost:
                            verdict = f"met ({share:.3f} of clean)"
                        else:
                            why = [f"{share:.3f} of clean"] if share < 0.5 else []
                            if lost:
                                why.append("acknowledged messages lost" if mw.loss else "loss not measured")
                            verdict = "not met: " + ", ".join(why)
                    elif not mw.ok or mw.rate is None:
                        verdict = "failed: no Millwright figure"
                    elif ratio is None:
                        verdict = "n/a: no Mosquitto figure"
                    elif ratio >= 2 and not lost:
                        verdict = "met"
                    else:
                        why = [f"{math.floor(ratio * 1000) / 1000:.3f}x"] if ratio < 2 else []
                        if lost:
                            why.append(f"{mw.loss:,} acknowledged lost" if mw.loss else "loss not measured")
                        verdict = "not met: " + ", ".join(why)
                if crashed:
                    verdict += f" ({' and '.join(crashed)} exited during the run)"
                notes = "".join(f" {b}:{r.note}" for b, r in (("Millwright", mw), ("Mosquitto", mq)) if r.note)
                rows.append([
                    title, gen, place,
                    fmt_rate(mw.rate) + rate_note, fmt_rate(mq.rate) + rate_note, ratio_s,
                    f"{fmt_loss(mw.loss)} / {fmt_loss(mq.loss)}" if qos else "– (QoS 0)",
                    f"{fmt_ms(mw.p99_ms)} / {fmt_ms(mq.p99_ms)}",
                    verdict + (f";{notes}" if notes else ""),
                ])

    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))
    if a.header:
        print(a.header)
    print(line(head))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))
    met = sum(1 for r in rows if r[-1].startswith("met"))
    rated = sum(1 for r in rows if not r[-1].startswith("n/a"))
    summary = f"{met} of {rated} measured rows met."
    print(summary)
    if a.markdown:
        with open(a.markdown, "w") as f:
            if a.header:
                f.write(a.header + "\n\n")
            f.write("| " + " | ".join(head) + " |\n")
            f.write("|" + "---|" * len(head) + "\n")
            for r in rows:
                f.write("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |\n")
            f.write("\n" + summary + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
