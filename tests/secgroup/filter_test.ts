import { assert, assertEquals } from "../assert.ts";
import { type FilterOptions, type FilterVerdict, SecurityFilter } from "../../secgroup/mod.ts";
import type { DesiredRule } from "../../daemon/protocol.ts";
import {
  echo,
  eth,
  ICMP4,
  ICMP6,
  icmpError,
  icmpMessage,
  ipPacket,
  rule,
  tcp,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  tcpSegment,
  udp,
  udpDatagram,
} from "./frames.ts";
import { mutate, Prng } from "../fixtures/mutate.ts";
import { loadFixture } from "../fixtures/fixtures.ts";
import { buildPeriodicRa, DropCounters, handleGuestFrame } from "../../services/mod.ts";
import { WireError } from "../../wire/mod.ts";
import { guestArp, testCtx } from "../services/helpers.ts";
import { GATEWAY_IPV4 } from "../../services/context.ts";

const G4 = "10.0.0.5";
const R4 = "10.0.0.9";
const OTHER4 = "10.0.0.10";
const G6 = "fd00::5";
const R6 = "fd00::9";

/** A filter with groups attached, `rules` applied, and a clock the test moves. */
function setup(rules: DesiredRule[], opts: FilterOptions = {}) {
  const clock = { t: 1000 };
  const sg = new SecurityFilter({ now: () => clock.t, ...opts });
  sg.update(["sg-1"], rules);
  return { sg, clock };
}

function passes(v: FilterVerdict, msg: string): void {
  assert(v.pass, `${msg}: dropped (${v.pass ? "" : v.reason})`);
}

function drops(v: FilterVerdict, reason: string, msg: string): void {
  assert(!v.pass, `${msg}: passed (${v.pass ? v.via : ""})`);
  assertEquals(v.reason, reason, msg);
}

Deno.test("no group attached: the filter is off; attached with no rules: both ways denied", () => {
  const sg = new SecurityFilter();
  assertEquals(sg.enabled, false);
  assertEquals(sg.update([], [rule("r", "INGRESS", "ALL")]).changed, true);
  assertEquals(sg.enabled, false, "rules without a group do nothing");
  sg.update(["sg-1"], []);
  assertEquals(sg.enabled, true);
  drops(sg.filter(tcp("ingress", R4, G4, 5555, 22, TCP_SYN), "ingress"), "not_allowed", "in");
  drops(sg.filter(udp("egress", G4, R4, 5555, 53), "egress"), "not_allowed", "out");
  const c = sg.counters();
  assertEquals(c.sg_drop_ingress, 1);
  assertEquals(c.sg_drop_egress, 1);
  assertEquals(c.sg_drop_not_allowed, 2);
  assertEquals(sg.update(["sg-1"], []).changed, false, "same input is a no-op");
});

Deno.test("an ingress TCP rule admits its port only, and the replies pass out", () => {
  const { sg } = setup([rule("ssh", "INGRESS", "TCP", { portStart: 22, portEnd: 22 })]);
  passes(sg.filter(tcp("ingress", R4, G4, 40000, 22, TCP_SYN), "ingress"), "SYN to 22");
  drops(sg.filter(tcp("ingress", R4, G4, 40001, 23, TCP_SYN), "ingress"), "not_allowed", "to 23");
  passes(sg.filter(tcp("egress", G4, R4, 22, 40000, TCP_SYN | TCP_ACK), "egress"), "SYN-ACK");
  passes(sg.filter(tcp("ingress", R4, G4, 40000, 22, TCP_ACK), "ingress"), "ACK");
  passes(sg.filter(tcp("egress", G4, R4, 22, 40000, TCP_ACK), "egress"), "data out");
  drops(
    sg.filter(tcp("egress", G4, R4, 22, 40001, TCP_SYN | TCP_ACK), "egress"),
    "not_allowed",
    "a reply to a connection that was refused",
  );
  const c = sg.counters();
  assertEquals(c.sg_rule_hit_ssh, 1, "one new flow");
  assertEquals(c.sg_pass_established, 3);
  assertEquals(c.sg_conntrack_entries, 1);
});

Deno.test("replies to the guest's own UDP and TCP pass in with no ingress rule", () => {
  const { sg } = setup([rule("out", "EGRESS", "ALL")]);
  passes(sg.filter(udp("egress", G4, R4, 5353, 53), "egress"), "query");
  passes(sg.filter(udp("ingress", R4, G4, 53, 5353), "ingress"), "answer");
  drops(sg.filter(udp("ingress", R4, G4, 53, 5354), "ingress"), "not_allowed", "other port");
  drops(sg.filter(udp("ingress", OTHER4, G4, 53, 5353), "ingress"), "not_allowed", "other host");
  // A packet with the flow's own orientation coming in is not a reply.
  drops(sg.filter(udp("ingress", G4, R4, 5353, 53), "ingress"), "not_allowed", "spoofed");
  passes(sg.filter(tcp("egress", G6, R6, 41000, 443, TCP_SYN), "egress"), "SYN v6");
  passes(sg.filter(tcp("ingress", R6, G6, 443, 41000, TCP_SYN | TCP_ACK), "ingress"), "SYN-ACK");
});

Deno.test("ICMP echo is tracked by identifier, both families", () => {
  const { sg } = setup([rule("ping4", "EGRESS", "ICMP"), rule("ping6", "EGRESS", "ICMPV6")]);
  passes(sg.filter(echo("egress", G4, R4, true, 77), "egress"), "request");
  passes(sg.filter(echo("ingress", R4, G4, false, 77), "ingress"), "reply");
  drops(sg.filter(echo("ingress", R4, G4, false, 78), "ingress"), "not_allowed", "other id");
  drops(sg.filter(echo("ingress", R4, G4, true, 77), "ingress"), "not_allowed", "their request");
  passes(sg.filter(echo("egress", G6, R6, true, 5), "egress"), "request v6");
  passes(sg.filter(echo("ingress", R6, G6, false, 5), "ingress"), "reply v6");
  // Identifier 0 makes a request look like the reply orientation of the flow: still refused.
  passes(sg.filter(echo("egress", G4, R4, true, 0), "egress"), "request id 0");
  drops(sg.filter(echo("ingress", R4, G4, true, 0), "ingress"), "not_allowed", "request id 0 in");
  assertEquals(sg.counters().sg_rule_hit_ping4, 2);
  assertEquals(sg.counters().sg_rule_hit_ping6, 1);
});

Deno.test("ICMP errors quoting a tracked flow pass to its sender, others do not", () => {
  const { sg } = setup([rule("out", "EGRESS", "UDP"), rule("ping", "EGRESS", "ICMPV6")]);
  const query = ipPacket(G4, R4, 17, udpDatagram(6000, 53));
  passes(sg.filter(eth(query, "egress"), "egress"), "query");
  passes(
    sg.filter(icmpError("ingress", R4, G4, ICMP4.UNREACHABLE, query), "ingress"),
    "port unreachable from the far end",
  );
  passes(
    sg.filter(icmpError("ingress", "169.254.0.1", G4, ICMP4.TIME_EXCEEDED, query), "ingress"),
    "time exceeded from a router",
  );
  const untracked = ipPacket(G4, R4, 17, udpDatagram(6001, 53));
  drops(
    sg.filter(icmpError("ingress", R4, G4, ICMP4.UNREACHABLE, untracked), "ingress"),
    "not_allowed",
    "quotes an unknown flow",
  );
  drops(
    sg.filter(icmpError("ingress", R4, OTHER4, ICMP4.UNREACHABLE, query), "ingress"),
    "not_allowed",
    "sent to someone who is not the quoted sender",
  );
  const ping6 = ipPacket(G6, R6, 58, icmpMessage(ICMP6.ECHO_REQUEST, 9));
  passes(sg.filter(eth(ping6, "egress"), "egress"), "ping v6");
  passes(
    sg.filter(icmpError("ingress", "fd00::1", G6, ICMP6.TOO_BIG, ping6), "ingress"),
    "packet too big about the ping",
  );
  assertEquals(sg.counters().sg_pass_related, 3);
});

Deno.test("timeouts follow the injected clock, per protocol and TCP state", () => {
  const { sg, clock } = setup([rule("out", "EGRESS", "ALL")], {
    timeouts: {
      udpUnreplied: 30,
      udpReplied: 180,
      tcpSynSent: 50,
      tcpEstablished: 1000,
      tcpClosed: 10,
      icmpEcho: 20,
    },
  });
  // UDP unreplied: 30 ms.
  sg.filter(udp("egress", G4, R4, 1, 2), "egress");
  clock.t += 31;
  drops(sg.filter(udp("ingress", R4, G4, 2, 1), "ingress"), "not_allowed", "late answer");
  // Replied UDP lives 180 ms after its last packet.
  sg.filter(udp("egress", G4, R4, 3, 4), "egress");
  passes(sg.filter(udp("ingress", R4, G4, 4, 3), "ingress"), "answer");
  clock.t += 150;
  passes(sg.filter(udp("ingress", R4, G4, 4, 3), "ingress"), "still replied");
  clock.t += 181;
  drops(sg.filter(udp("ingress", R4, G4, 4, 3), "ingress"), "not_allowed", "idle past 180");
  // TCP: SYN_SENT short, established long, RST short.
  sg.filter(tcp("egress", G4, R4, 5, 80, TCP_SYN), "egress");
  clock.t += 51;
  drops(
    sg.filter(tcp("ingress", R4, G4, 80, 5, TCP_SYN | TCP_ACK), "ingress"),
    "not_allowed",
    "late SYN-ACK",
  );
  sg.filter(tcp("egress", G4, R4, 6, 80, TCP_SYN), "egress");
  sg.filter(tcp("ingress", R4, G4, 80, 6, TCP_SYN | TCP_ACK), "ingress");
  sg.filter(tcp("egress", G4, R4, 6, 80, TCP_ACK), "egress");
  clock.t += 900;
  passes(sg.filter(tcp("ingress", R4, G4, 80, 6, TCP_ACK), "ingress"), "established after 900");
  sg.filter(tcp("ingress", R4, G4, 80, 6, TCP_RST), "ingress");
  clock.t += 11;
  drops(sg.filter(tcp("ingress", R4, G4, 80, 6, TCP_ACK), "ingress"), "not_allowed", "after RST");
  // ICMP echo: 20 ms.
  sg.filter(echo("egress", G4, R4, true, 1), "egress");
  clock.t += 21;
  drops(sg.filter(echo("ingress", R4, G4, false, 1), "ingress"), "not_allowed", "late pong");
});

Deno.test("a FIN closes a flow within the closing timeout; a new SYN reopens it", () => {
  const { sg, clock } = setup([rule("out", "EGRESS", "TCP")], {
    timeouts: { tcpClosing: 40, tcpEstablished: 10_000 },
  });
  sg.filter(tcp("egress", G4, R4, 7, 80, TCP_SYN), "egress");
  sg.filter(tcp("ingress", R4, G4, 80, 7, TCP_SYN | TCP_ACK), "ingress");
  sg.filter(tcp("egress", G4, R4, 7, 80, TCP_FIN | TCP_ACK), "egress");
  clock.t += 41;
  drops(sg.filter(tcp("ingress", R4, G4, 80, 7, TCP_ACK), "ingress"), "not_allowed", "closed");
  passes(sg.filter(tcp("egress", G4, R4, 7, 80, TCP_SYN), "egress"), "reopened");
  passes(sg.filter(tcp("ingress", R4, G4, 80, 7, TCP_SYN | TCP_ACK), "ingress"), "reply");
});

Deno.test("a full table drops new flows and counts them; old flows keep passing", () => {
  const { sg, clock } = setup([rule("out", "EGRESS", "UDP")], {
    maxFlows: 4,
    timeouts: { udpUnreplied: 100 },
  });
  for (let p = 1; p <= 4; p++) {
    passes(sg.filter(udp("egress", G4, R4, p, 53), "egress"), `flow ${p}`);
  }
  drops(sg.filter(udp("egress", G4, R4, 5, 53), "egress"), "conntrack_full", "fifth");
  passes(sg.filter(udp("ingress", R4, G4, 53, 1), "ingress"), "old flow's reply");
  const c = sg.counters();
  assertEquals(c.sg_conntrack_full, 1);
  assertEquals(c.sg_conntrack_entries, 4);
  assertEquals(c.sg_drop_egress, 1);
  assertEquals(c.sg_rule_hit_out, 4, "the refused flow is not a hit");
  clock.t += 101;
  passes(sg.filter(udp("egress", G4, R4, 5, 53), "egress"), "room after expiry");
  drops(sg.filter(udp("ingress", R4, G4, 53, 2), "ingress"), "not_allowed", "expired flow");
  assert(sg.counters().sg_conntrack_entries <= 4);
});

Deno.test("a rule change cuts the flows it no longer allows and keeps the others", () => {
  const web = rule("web", "INGRESS", "TCP", { portStart: 80, portEnd: 80 });
  const ssh = rule("ssh", "INGRESS", "TCP", { portStart: 22, portEnd: 22 });
  const { sg } = setup([web, ssh]);
  passes(sg.filter(tcp("ingress", R4, G4, 3000, 80, TCP_SYN), "ingress"), "web");
  passes(sg.filter(tcp("ingress", R4, G4, 3001, 22, TCP_SYN), "ingress"), "ssh");
  passes(sg.filter(tcp("egress", G4, R4, 80, 3000, TCP_SYN | TCP_ACK), "egress"), "web reply");
  const r = sg.update(["sg-1"], [ssh]);
  assertEquals(r.revoked, 1);
  drops(
    sg.filter(tcp("egress", G4, R4, 80, 3000, TCP_ACK), "egress"),
    "not_allowed",
    "web reply after the rule went",
  );
  drops(sg.filter(tcp("ingress", R4, G4, 3000, 80, TCP_ACK), "ingress"), "not_allowed", "web in");
  passes(sg.filter(tcp("egress", G4, R4, 22, 3001, TCP_ACK), "egress"), "ssh survives");
  const c = sg.counters();
  assertEquals(c.sg_rule_hit_ssh, 1, "a rule that stays keeps its count");
  assertEquals(c.sg_rule_hit_web, undefined, "a removed rule is no longer reported");
  assertEquals(c.sg_conntrack_revoked, 1);
  // A narrowed CIDR cuts flows from outside it, in either direction of origin.
  const out = rule("out", "EGRESS", "UDP", { cidr: "10.0.0.0/24" });
  sg.update(["sg-1"], [ssh, out]);
  passes(sg.filter(udp("egress", G4, R4, 9, 9), "egress"), "udp out");
  sg.update(["sg-1"], [ssh, { ...out, cidr: "10.0.0.8/32" }]);
  drops(
    sg.filter(udp("ingress", R4, G4, 9, 9), "ingress"),
    "not_allowed",
    "udp reply after narrowing",
  );
});

Deno.test("detach drops all state; attach again starts from nothing", () => {
  const { sg } = setup([rule("out", "EGRESS", "ALL")]);
  sg.filter(udp("egress", G4, R4, 1, 2), "egress");
  sg.update([], []);
  assertEquals(sg.enabled, false);
  assertEquals(sg.flows, 0);
  sg.update(["sg-2"], []);
  drops(sg.filter(udp("ingress", R4, G4, 2, 1), "ingress"), "not_allowed", "old flow forgotten");
});

Deno.test("ingress CIDRs match the source, egress CIDRs the destination", () => {
  const { sg } = setup([
    rule("from-r", "INGRESS", "ICMP", { cidr: `${R4}/32` }),
    rule("to-r", "EGRESS", "UDP", { cidr: `${R4}/32` }),
  ]);
  passes(sg.filter(echo("ingress", R4, G4, true, 1), "ingress"), "ping from R");
  drops(sg.filter(echo("ingress", OTHER4, G4, true, 1), "ingress"), "not_allowed", "from other");
  passes(sg.filter(udp("egress", G4, R4, 1, 2), "egress"), "to R");
  drops(sg.filter(udp("egress", G4, OTHER4, 1, 2), "egress"), "not_allowed", "to other");
});

Deno.test("ARP, neighbor discovery and DHCP with the gateway pass without rules", () => {
  const { sg } = setup([]);
  const arp = loadFixture("arp_request_guest");
  passes(sg.filter(arp, "egress"), "ARP");
  passes(sg.filter(loadFixture("ndp_ns_ndisc6"), "egress"), "NS");
  passes(sg.filter(loadFixture("ndp_ra_dnsmasq_periodic"), "ingress"), "RA to the guest");
  drops(
    sg.filter(loadFixture("ndp_ra_dnsmasq_periodic"), "egress"),
    "not_allowed",
    "RA from a guest",
  );
  passes(sg.filter(loadFixture("dhcpv4_udhcpc_discover"), "egress"), "DHCPDISCOVER");
  passes(sg.filter(loadFixture("dhcpv6_dhclient_solicit"), "egress"), "DHCPv6 solicit");
  // DHCP server ports to anyone else are not housekeeping.
  drops(sg.filter(udp("egress", G4, R4, 68, 67), "egress"), "not_allowed", "DHCP to a peer");
  drops(
    sg.filter(eth(ipPacket(R6, G6, 58, icmpMessage(135, 0), { ttl: 64 }), "ingress"), "ingress"),
    "not_allowed",
    "NS that crossed a router",
  );
});

Deno.test("later fragments match only rules without ports", () => {
  const { sg } = setup([
    rule("dns", "INGRESS", "UDP", { portStart: 53, portEnd: 53 }),
    rule("any", "EGRESS", "UDP"),
  ]);
  const frag = eth(ipPacket(R4, G4, 17, new Uint8Array(64), { fragmentOffset: 10 }), "ingress");
  drops(sg.filter(frag, "ingress"), "not_allowed", "ported rule");
  const out = eth(ipPacket(G4, R4, 17, new Uint8Array(64), { fragmentOffset: 10 }), "egress");
  passes(sg.filter(out, "egress"), "any-port rule");
});

Deno.test("a 64 KiB TCP super-frame with a partial checksum passes by its flow", () => {
  const { sg } = setup([rule("out", "EGRESS", "TCP")]);
  passes(sg.filter(tcp("egress", G4, R4, 9000, 80, TCP_SYN), "egress"), "SYN");
  const big = eth(ipPacket(G4, R4, 6, tcpSegment(9000, 80, TCP_ACK, 65535 - 40)), "egress");
  assertEquals(big.length, 14 + 65535);
  big[14 + 20 + 16] = 0xab; // a pseudo-header-only checksum, as with offload
  passes(sg.filter(big, "egress"), "super-frame");
  const big6 = eth(ipPacket(G6, R6, 6, tcpSegment(9001, 80, TCP_SYN, 65000)), "egress");
  passes(sg.filter(big6, "egress"), "IPv6 super-frame");
});

Deno.test("malformed frames are dropped and counted, never thrown on", () => {
  const { sg } = setup([rule("all-in", "INGRESS", "ALL"), rule("all-out", "EGRESS", "ALL")]);
  const valid = tcp("egress", G4, R4, 1, 2, TCP_SYN);
  drops(sg.filter(valid.subarray(0, 10), "egress"), "malformed", "short Ethernet");
  drops(sg.filter(valid.subarray(0, 30), "egress"), "malformed", "cut IPv4 header");
  drops(sg.filter(valid.subarray(0, 14 + 20 + 10), "egress"), "malformed", "cut TCP header");
  const lying = valid.slice();
  lying[14 + 2] = 0xff; // total length beyond the frame
  drops(sg.filter(lying, "egress"), "malformed", "total length");
  const v6InV4 = eth(ipPacket(G6, R6, 17, udpDatagram(1, 2)), "egress");
  v6InV4[12] = 0x08;
  v6InV4[13] = 0x00;
  drops(sg.filter(v6InV4, "egress"), "malformed", "IPv6 behind an IPv4 ethertype");
  const vlan = valid.slice();
  vlan[12] = 0x81;
  vlan[13] = 0x00;
  drops(sg.filter(vlan, "egress"), "unsupported_ethertype", "VLAN tag");
  const c = sg.counters();
  assertEquals(c.sg_drop_malformed, 5);
  assertEquals(c.sg_drop_egress, 6);
});

Deno.test("thousands of mutated and random frames: a verdict each, counters add up", () => {
  const { sg } = setup([
    rule("tcp-in", "INGRESS", "TCP", { portStart: 1, portEnd: 1000 }),
    rule("out", "EGRESS", "ALL"),
    rule("icmp6", "INGRESS", "ICMPV6", { cidr: "fd00::/64" }),
  ], { maxFlows: 64 });
  const seeds = [
    tcp("egress", G4, R4, 1, 2, TCP_SYN),
    tcp("ingress", R6, G6, 5, 22, TCP_SYN),
    udp("egress", G6, R6, 1, 2),
    echo("ingress", R4, G4, true, 3),
    icmpError("ingress", R4, G4, ICMP4.UNREACHABLE, ipPacket(G4, R4, 17, udpDatagram(1, 2))),
    icmpError("ingress", R6, G6, ICMP6.UNREACHABLE, ipPacket(G6, R6, 6, tcpSegment(1, 2, 0))),
    loadFixture("ndp_ns_ndisc6"),
    loadFixture("dhcpv4_udhcpc_request"),
  ];
  const rng = new Prng(99);
  let drops = 0;
  const N = 20_000;
  for (let i = 0; i < N; i++) {
    const seed = seeds[rng.below(seeds.length)];
    let f: Uint8Array;
    if (i % 10 === 0) {
      f = rng.bytes(rng.below(200));
    } else if (i % 2 === 0) {
      f = mutate(rng, seed, rng.below(2) === 0);
    } else {
      f = seed.slice();
      // Several bit flips and truncations in the headers, where the parser looks.
      for (let k = 0; k < 1 + rng.below(4); k++) {
        f[rng.below(Math.min(f.length, 90))] ^= 1 << rng.below(8);
      }
      if (rng.below(3) === 0) f = f.subarray(0, rng.below(f.length + 1));
    }
    const dir = rng.below(2) === 0 ? "ingress" : "egress";
    const v = sg.filter(f, dir);
    assert(typeof v.pass === "boolean");
    if (!v.pass) drops++;
  }
  const c = sg.counters();
  assertEquals(c.sg_drop_ingress + c.sg_drop_egress, drops);
  const reasons = (c.sg_drop_malformed ?? 0) + (c.sg_drop_not_allowed ?? 0) +
    (c.sg_drop_unsupported_ethertype ?? 0) + c.sg_conntrack_full;
  assertEquals(reasons, drops, "every drop has a reason");
  assert((c.sg_drop_malformed ?? 0) > 1000, `malformed seen: ${c.sg_drop_malformed}`);
  assert(c.sg_conntrack_entries <= 64);
});

Deno.test("everything the gateway's services send to the guest passes ingress without rules", () => {
  const { sg } = setup([]);
  const ctx = testCtx();
  const sent: [string, Uint8Array][] = [];
  for (
    const name of [
      "dhcpv4_udhcpc_discover",
      "dhcpv4_udhcpc_request",
      "dhcpv6_dhclient_solicit",
      "dhcpv6_dhclient_request",
      "ndp_rs_rdisc6",
      "ndp_ns_ndisc6",
    ]
  ) {
    const v = handleGuestFrame(ctx, loadFixture(name), new DropCounters());
    // Some captures address another server (and get no answer); the rest must be answered.
    if (v.kind === "reply") { for (const f of v.frames) sent.push([name, f]); }
  }
  const arp = handleGuestFrame(ctx, guestArp({ targetIp: GATEWAY_IPV4 }), new DropCounters());
  if (arp.kind === "reply") { for (const f of arp.frames) sent.push(["ARP for the gateway", f]); }
  const ra = buildPeriodicRa(ctx);
  assert(!(ra instanceof WireError));
  sent.push(["periodic RA", ra]);
  assert(sent.length >= 6, `replies: ${sent.map(([n]) => n)}`);
  for (const [name, f] of sent) passes(sg.filter(f, "ingress"), `reply to ${name}`);
  assertEquals(sg.counters().sg_drop_ingress, 0);
});

Deno.test("a packet against the way of a known flow passes by a rule only, adding no flow", () => {
  const { sg } = setup([rule("out", "EGRESS", "UDP"), rule("in", "INGRESS", "UDP")]);
  passes(sg.filter(udp("egress", G4, R4, 7000, 53), "egress"), "out");
  passes(sg.filter(udp("ingress", G4, R4, 7000, 53), "ingress"), "same tuple coming in");
  assertEquals(sg.counters().sg_conntrack_entries, 1);
  assertEquals(sg.counters().sg_rule_hit_in, 1, "passed by its rule");
  passes(sg.filter(udp("ingress", R4, G4, 53, 7000), "ingress"), "the real reply");
  assertEquals(sg.counters().sg_pass_established, 1);
});
