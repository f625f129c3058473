/**
 * Cost of the security-group filter: `./scripts/deno bench tests/secgroup/filter_bench.ts`.
 * Each iteration filters one burst of {@link BURST} frames, as the vNIC loop does (one clock
 * read per burst); divide by {@link BURST} for the cost per packet. Cases: frames of an
 * established flow (the common case), frames that each open a new flow and so walk the rules,
 * and the matcher alone, with 0, 1 and 50 rules attached (the matching rule last, so all 50
 * are looked at).
 * @module
 */

import { compileRules, SecurityFilter } from "../../secgroup/mod.ts";
import type { DesiredRule } from "../../daemon/protocol.ts";
import { rule, tcp, TCP_ACK, TCP_SYN } from "./frames.ts";

const G = "10.0.0.5";
const R = "10.0.0.9";
/** Frames per vNIC burst. */
const BURST = 64;

/** `n` rules, none matching the benchmark's traffic except the last (port 443 from R). */
function rules(n: number): DesiredRule[] {
  const out: DesiredRule[] = [];
  for (let i = 0; i < n - 1; i++) {
    out.push(
      rule(`r${i}`, "INGRESS", "TCP", {
        portStart: 1000 + i,
        portEnd: 1000 + i,
        cidr: "10.0.0.0/24",
      }),
    );
  }
  if (n > 0) {
    out.push(rule("last", "INGRESS", "TCP", { portStart: 443, portEnd: 443, cidr: `${R}/32` }));
  }
  return out;
}

const data = tcp("ingress", R, G, 50000, 443, TCP_ACK);

const noGroup = new SecurityFilter();
Deno.bench(`no group attached (the vNIC only checks enabled), ${BURST} frames`, {
  group: "established",
}, () => {
  for (let i = 0; i < BURST; i++) if (noGroup.enabled) noGroup.filter(data, "ingress", 0);
});

for (const n of [0, 1, 50]) {
  const sg = new SecurityFilter({ now: () => 0 });
  sg.update(["sg"], rules(n));
  sg.filter(tcp("ingress", R, G, 50000, 443, TCP_SYN), "ingress");
  Deno.bench(`established TCP flow, ${n} rules, ${BURST} frames`, { group: "established" }, () => {
    const now = sg.now();
    for (let i = 0; i < BURST; i++) sg.filter(data, "ingress", now);
  });
}

for (const n of [0, 1, 50]) {
  // A fresh source port per frame: each opens a flow and walks the rules. Flows expire after
  // 1 ms of the fake clock, which moves 1 ms per burst, so the table never fills.
  let t = 0;
  const sg = new SecurityFilter({ now: () => t, maxFlows: 1 << 16, timeouts: { tcpSynSent: 1 } });
  sg.update(["sg"], rules(n));
  const frames = Array.from(
    { length: 4096 },
    (_, i) => tcp("ingress", R, G, 1024 + i, 443, TCP_SYN),
  );
  let next = 0;
  Deno.bench(`new TCP flow, ${n} rules, ${BURST} frames`, { group: "new flow" }, () => {
    t++;
    for (let i = 0; i < BURST; i++) sg.filter(frames[next++ & 4095], "ingress", t);
  });
}

for (const n of [1, 50]) {
  const set = compileRules(rules(n));
  const remote = Int32Array.of(0x0a000009, 0, 0, 0);
  Deno.bench(`matcher alone, ${n} rules, ${BURST} lookups`, { group: "matcher" }, () => {
    for (let i = 0; i < BURST; i++) set.match("ingress", 4, 6, remote, true, 443);
  });
}
