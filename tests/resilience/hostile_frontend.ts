/**
 * A hostile frontend for load tests: one round sends every class of bad state a VMM or a
 * guest driver can put a vhost-user backend in, each on the harness frontend
 * (tests/harness/frontend.ts) against a real socket. The single-state checks with their exact
 * counters are tests/vhost/hostile_test.ts; this module repeats the same classes, plus the
 * ones that need a running daemon (kicks before enable, a memory table shrunk under a running
 * ring, malformed messages), as fast as it can.
 *
 * Every class is a function that may throw (the backend is allowed to hang up on us); the
 * caller counts what was sent and what the backend refused.
 * @module
 */

import { check, MAX_FRAME, nativeTest } from "../../ffi/binding.ts";
import {
  DESC_F_INDIRECT,
  DESC_F_NEXT,
  DESC_F_WRITE,
  Frontend,
  RXQ,
  TXQ,
  writeDescAt,
} from "../harness/frontend.ts";
import { ALL_FEATURES, ALL_PROTOCOL_FEATURES } from "../harness/setup.ts";
import { ARP_OP_REQUEST, emitArp, emitEthernet, ETHERTYPE_ARP } from "../../wire/mod.ts";
import { GATEWAY_IPV4 } from "../../services/context.ts";
import {
  encodeMessage,
  HEADER_SIZE,
  memTablePayload,
  Request,
  u64Payload,
  vringFilePayload,
  vringStatePayload,
} from "../../vhost/protocol.ts";

/** Queue size of the hostile rings: small, so that overlong chains are cheap to build. */
export const HOSTILE_QSIZE = 64;
/** Guest RAM of the hostile frontend: 2 regions of 1 MiB. */
const REGION_SIZE = 0x100000;
/** A guest-physical address in no region. */
const NOWHERE = 0x4000_0000;
/** More regions than SET_MEM_TABLE may carry (8). */
const TOO_MANY_REGIONS = 9;
/** Destination of the hostile vNIC's ARP request. */
const BROADCAST_MAC = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
/** A request code no vhost-user version defines. */
const UNKNOWN_REQUEST = 99;

/** One class of bad state: plants it on a connected, negotiated frontend. */
type RingAttack = (fe: Frontend) => void;
/** One class of bad state that needs a connection of its own. */
type ConnectionAttack = (socketPath: string) => void;

/** A chain of raw descriptors at fresh indices of ring q; returns the head. */
function raw(
  fe: Frontend,
  descs: { addr: number; len: number; flags: number; next?: number }[],
  q = TXQ,
): number {
  const ring = fe.rings[q];
  const ids = ring.alloc(descs.length);
  descs.forEach((d, k) => ring.writeDesc(ids[k], { ...d, next: d.next ?? ids[k + 1] ?? 0 }));
  ring.publish(ids[0]);
  return ids[0];
}

/** Bad TX chains: every malformed-descriptor class of hostile_test.ts. */
export const TX_ATTACKS: Record<string, RingAttack> = {
  address_outside_ram: (fe) => void raw(fe, [{ addr: NOWHERE, len: 100, flags: 0 }]),
  address_wraps_2_64: (fe) => void raw(fe, [{ addr: 2 ** 53, len: 100, flags: 0 }]),
  length_past_end_of_ram: (fe) => void raw(fe, [{ addr: fe.mem.size - 50, len: 100, flags: 0 }]),
  descriptor_loop: (fe) => {
    const ring = fe.rings[TXQ];
    const [a, b] = ring.alloc(2);
    const buf = fe.allocGuest(64);
    ring.writeDesc(a, { addr: buf, len: 32, flags: DESC_F_NEXT, next: b });
    ring.writeDesc(b, { addr: buf, len: 32, flags: DESC_F_NEXT, next: a });
    ring.publish(a);
  },
  next_index_beyond_queue: (fe) =>
    void raw(fe, [{
      addr: fe.allocGuest(64),
      len: 64,
      flags: DESC_F_NEXT,
      next: HOSTILE_QSIZE + 5,
    }]),
  head_index_beyond_queue: (fe) => fe.rings[TXQ].publish(HOSTILE_QSIZE + 1),
  chain_longer_than_queue: (fe) => {
    const table = fe.allocGuest(16 * HOSTILE_QSIZE);
    const buf = fe.allocGuest(64);
    for (let k = 0; k < HOSTILE_QSIZE; k++) {
      writeDescAt(fe.mem, table + 16 * k, {
        addr: buf,
        len: 1,
        flags: k + 1 < HOSTILE_QSIZE ? DESC_F_NEXT : 0,
        next: k + 1,
      });
    }
    raw(fe, [{ addr: buf, len: 20, flags: DESC_F_NEXT }, {
      addr: table,
      len: 16 * HOSTILE_QSIZE,
      flags: DESC_F_INDIRECT,
    }]);
  },
  frame_over_max: (fe) =>
    void raw(fe, [{ addr: 0, len: MAX_FRAME, flags: DESC_F_NEXT }, {
      addr: fe.allocGuest(64),
      len: 64,
      flags: 0,
    }]),
  indirect_size_not_16n: (fe) =>
    void raw(fe, [{ addr: fe.allocGuest(64), len: 40, flags: DESC_F_INDIRECT }]),
  indirect_longer_than_queue: (fe) =>
    void raw(fe, [{
      addr: fe.allocGuest(16 * (HOSTILE_QSIZE + 1)),
      len: 16 * (HOSTILE_QSIZE + 1),
      flags: DESC_F_INDIRECT,
    }]),
  indirect_with_next: (fe) => {
    const table = fe.allocGuest(16);
    writeDescAt(fe.mem, table, { addr: fe.allocGuest(64), len: 64, flags: 0, next: 0 });
    raw(fe, [{ addr: table, len: 16, flags: DESC_F_INDIRECT | DESC_F_NEXT, next: 0 }]);
  },
  nested_indirect: (fe) => {
    const inner = fe.allocGuest(16);
    writeDescAt(fe.mem, inner, { addr: fe.allocGuest(64), len: 64, flags: 0, next: 0 });
    const outer = fe.allocGuest(16);
    writeDescAt(fe.mem, outer, { addr: inner, len: 16, flags: DESC_F_INDIRECT, next: 0 });
    raw(fe, [{ addr: outer, len: 16, flags: DESC_F_INDIRECT }]);
  },
  loop_in_indirect: (fe) => {
    const table = fe.allocGuest(32);
    const buf = fe.allocGuest(64);
    writeDescAt(fe.mem, table, { addr: buf, len: 30, flags: DESC_F_NEXT, next: 1 });
    writeDescAt(fe.mem, table + 16, { addr: buf, len: 30, flags: DESC_F_NEXT, next: 0 });
    raw(fe, [{ addr: table, len: 32, flags: DESC_F_INDIRECT }]);
  },
  indirect_outside_ram: (fe) =>
    void raw(fe, [{ addr: fe.mem.size - 16, len: 32, flags: DESC_F_INDIRECT }]),
  write_only_on_tx: (fe) =>
    void raw(fe, [{ addr: fe.allocGuest(64), len: 64, flags: DESC_F_WRITE }]),
  empty_chain: (fe) => void raw(fe, [{ addr: fe.allocGuest(16), len: 0, flags: 0 }]),
  header_only_chain: (fe) => void raw(fe, [{ addr: fe.allocGuest(16), len: 12, flags: 0 }]),
};

/** Bad RX buffers: read-only, outside guest RAM, too small for any frame. */
export const RX_ATTACKS: Record<string, RingAttack> = {
  rx_read_only: (fe) => void raw(fe, [{ addr: fe.allocGuest(2048), len: 2048, flags: 0 }], RXQ),
  rx_outside_ram: (fe) => void raw(fe, [{ addr: NOWHERE, len: 2048, flags: DESC_F_WRITE }], RXQ),
  rx_too_small: (fe) =>
    void raw(fe, [{ addr: fe.allocGuest(8), len: 8, flags: DESC_F_WRITE }], RXQ),
};

/** Ring states that break the whole queue rather than one chain. */
export const QUEUE_ATTACKS: Record<string, RingAttack> = {
  avail_index_jump: (fe) => {
    const ring = fe.rings[TXQ];
    ring.setAvailIdx(ring.availIdx + HOSTILE_QSIZE + 10);
  },
  // The rings stay in region 0, the buffers of the next chain sit in the dropped region 1.
  mem_table_shrunk_under_ring: (fe) => {
    const r0 = fe.mem.regions[0];
    fe.request(Request.SET_MEM_TABLE, memTablePayload([r0.describe()]), { fds: [r0.fd] });
    raw(fe, [{ addr: REGION_SIZE + 0x100, len: 200, flags: 0 }]);
  },
  // The rings themselves are no longer in guest RAM.
  mem_table_without_the_rings: (fe) => {
    const r1 = fe.mem.regions[1];
    fe.request(Request.SET_MEM_TABLE, memTablePayload([r1.describe()]), { fds: [r1.fd] });
    raw(fe, [{ addr: REGION_SIZE + 0x100, len: 200, flags: 0 }]);
  },
};

function eventfd(): number {
  return check(nativeTest().mvn_test_eventfd(), "eventfd");
}

function closeFd(fd: number): void {
  nativeTest().mvn_test_close(fd);
}

/** Sends one raw message on a fresh connection and hangs up. */
function oneMessage(socketPath: string, bytes: Uint8Array, fdCount = 0): void {
  const fe = Frontend.connect({ socketPath, regions: 1, regionSize: 0x10000 });
  const fds = Array.from({ length: fdCount }, eventfd);
  try {
    fe.sendRaw(bytes, fds);
  } finally {
    for (const fd of fds) closeFd(fd);
    fe.close();
  }
}

/** A header whose size field is `claimed`, followed by `actual` payload bytes. */
function lyingHeader(request: number, claimed: number, actual: number): Uint8Array {
  const m = new Uint8Array(HEADER_SIZE + actual);
  const v = new DataView(m.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, 1, true);
  v.setUint32(8, claimed >>> 0, true);
  return m;
}

/** Messages with bad sizes and bad fd counts, and kicks before the queue is enabled. */
export const CONNECTION_ATTACKS: Record<string, ConnectionAttack> = {
  msg_size_larger_than_sent: (p) => oneMessage(p, lyingHeader(Request.SET_FEATURES, 100, 8)),
  msg_size_4g: (p) => oneMessage(p, lyingHeader(Request.SET_FEATURES, 0xffff_ffff, 8)),
  msg_wrong_fixed_size: (p) =>
    oneMessage(p, encodeMessage(Request.SET_FEATURES, 0, new Uint8Array(4))),
  msg_unknown_request: (p) => oneMessage(p, encodeMessage(UNKNOWN_REQUEST, 0, u64Payload(0n))),
  msg_truncated_header: (p) => oneMessage(p, new Uint8Array(HEADER_SIZE - 5)),
  msg_mem_table_too_many_regions: (p) => {
    const payload = new Uint8Array(8);
    new DataView(payload.buffer).setUint32(0, TOO_MANY_REGIONS, true);
    oneMessage(p, encodeMessage(Request.SET_MEM_TABLE, 0, payload), 1);
  },
  fds_mem_table_fewer_than_regions: (p) => {
    const fe = Frontend.connect({ socketPath: p, regions: 2, regionSize: REGION_SIZE });
    try {
      fe.sendRaw(
        encodeMessage(
          Request.SET_MEM_TABLE,
          0,
          memTablePayload(fe.mem.regions.map((r) => r.describe())),
        ),
        [fe.mem.regions[0].fd],
      );
    } finally {
      fe.close();
    }
  },
  fds_kick_without_fd_or_nofd_flag: (p) =>
    oneMessage(p, encodeMessage(Request.SET_VRING_KICK, 0, vringFilePayload(TXQ, false)), 0),
  fds_extra_on_get_features: (p) =>
    oneMessage(p, encodeMessage(Request.GET_FEATURES, 0, new Uint8Array(0)), 3),
  fds_nine_on_set_owner: (p) =>
    oneMessage(p, encodeMessage(Request.SET_OWNER, 0, new Uint8Array(0)), 8),
  // Everything up to a kick fd, then kicks and a chain, but no SET_VRING_ENABLE.
  kick_before_enable: (p) => {
    const fe = Frontend.connect({ socketPath: p });
    try {
      fe.requestU64(Request.GET_FEATURES);
      fe.request(Request.SET_OWNER);
      fe.request(Request.SET_FEATURES, u64Payload(ALL_FEATURES));
      fe.setMemTable();
      const kick = eventfd();
      fe.kick[TXQ] = kick;
      fe.request(Request.SET_VRING_NUM, vringStatePayload(TXQ, HOSTILE_QSIZE));
      fe.request(Request.SET_VRING_KICK, vringFilePayload(TXQ, false), { fds: [kick] });
      for (let i = 0; i < 4; i++) fe.kickQueue(TXQ);
    } finally {
      fe.close();
    }
  },
  // A kick fd for a ring that has no addresses yet, kicked.
  kick_before_ring_addresses: (p) => {
    const fe = Frontend.connect({ socketPath: p });
    try {
      fe.request(Request.SET_OWNER);
      const kick = eventfd();
      fe.kick[RXQ] = kick;
      fe.request(Request.SET_VRING_KICK, vringFilePayload(RXQ, false), { fds: [kick] });
      fe.kickQueue(RXQ);
    } finally {
      fe.close();
    }
  },
};

/** Every class name, for reports. */
export const ALL_CLASSES = [
  ...Object.keys(TX_ATTACKS),
  ...Object.keys(RX_ATTACKS),
  ...Object.keys(QUEUE_ATTACKS),
  ...Object.keys(CONNECTION_ATTACKS),
];

/** What one round did: per class, how often it was sent and how often the backend hung up
 * or an exchange failed while it was sent (allowed: a backend may refuse a hostile VMM). */
export interface RoundTally {
  sent: Record<string, number>;
  refused: Record<string, number>;
}

function tally(t: RoundTally, name: string, f: () => void): void {
  try {
    f();
  } catch {
    t.refused[name] = (t.refused[name] ?? 0) + 1;
  }
  t.sent[name] = (t.sent[name] ?? 0) + 1;
}

/** Most time one round waits for the device to walk what it was given. */
const WALK_TIMEOUT_MS = 300;
/** A ring whose used index moved and then stood still this long is taken as walked. */
const WALK_STALL_MS = 20;
/** Time given to the device to meet each queue-wide bad state. */
const QUEUE_LOOK_MS = 20;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Blocks this thread (a Worker) for `ms`. */
function pause(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** Waits until the device has returned every chain made available on ring q, or has
 * returned nothing more for a while (a chain with a head index beyond the queue has no used
 * entry to come back in), bounded in all. */
function walked(fe: Frontend, q: number): void {
  const ring = fe.rings[q];
  const end = performance.now() + WALK_TIMEOUT_MS;
  let last = ring.usedIdx();
  let stillSince = performance.now();
  while (ring.usedIdx() !== ring.availIdx && performance.now() < end) {
    pause(1);
    const now = performance.now();
    if (ring.usedIdx() !== last) {
      last = ring.usedIdx();
      stillSince = now;
    } else if (last !== ring.lastUsed && now - stillSince > WALK_STALL_MS) {
      break;
    }
  }
  ring.takeUsed();
}

/** An ARP request for the gateway from the hostile vNIC itself: its answer makes the device
 * walk the bad RX buffers. */
function arpForGateway(mac: Uint8Array, ip: Uint8Array): Uint8Array {
  const arp = emitArp({
    operation: ARP_OP_REQUEST,
    senderMac: mac,
    senderIp: ip,
    targetMac: new Uint8Array(6),
    targetIp: GATEWAY_IPV4,
  });
  return emitEthernet({ dst: BROADCAST_MAC, src: mac, ethertype: ETHERTYPE_ARP, payload: arp });
}

/** The hostile vNIC's identity, so that its own frames get answers. */
export interface HostileNic {
  socketPath: string;
  mac: Uint8Array;
  ipv4: Uint8Array;
}

/** A negotiated frontend with small rings, or null if the backend would not negotiate. */
function negotiated(socketPath: string, t: RoundTally): Frontend | null {
  const fe = Frontend.connect({ socketPath, regions: 2, regionSize: REGION_SIZE });
  try {
    fe.negotiate({
      features: ALL_FEATURES,
      protocolFeatures: ALL_PROTOCOL_FEATURES,
      queueSize: HOSTILE_QSIZE,
    });
    return fe;
  } catch {
    t.refused.negotiate = (t.refused.negotiate ?? 0) + 1;
    fe.close();
    return null;
  }
}

/**
 * Runs every class once against the hostile vNIC. Bad RX buffers go first (with one good one
 * for the gateway's ARP answer that makes the device walk them), then the bad TX chains and
 * the ARP request; the round waits (bounded) until the device has walked them, so that each
 * class is really met rather than lost in a reset. Then the queue-wide states, each given a
 * moment to be seen, then the connection-level attacks.
 */
export function hostileRound(nic: HostileNic, t: RoundTally): void {
  const fe = negotiated(nic.socketPath, t);
  if (fe) {
    try {
      for (const [name, attack] of Object.entries(RX_ATTACKS)) tally(t, name, () => attack(fe));
      fe.postRx(1, 2048);
      for (const [name, attack] of Object.entries(TX_ATTACKS)) tally(t, name, () => attack(fe));
      fe.sendFrame(arpForGateway(nic.mac, nic.ipv4));
      fe.kickQueue(RXQ);
      walked(fe, TXQ);
      walked(fe, RXQ);
      for (const [name, attack] of Object.entries(QUEUE_ATTACKS)) {
        tally(t, name, () => {
          attack(fe);
          fe.kickQueue(TXQ);
          // A broken queue is not walked to the end: give the device a moment to look.
          pause(QUEUE_LOOK_MS);
        });
      }
    } catch {
      t.refused.round = (t.refused.round ?? 0) + 1;
    } finally {
      fe.close();
    }
  }
  for (const [name, attack] of Object.entries(CONNECTION_ATTACKS)) {
    tally(t, name, () => attack(nic.socketPath));
  }
}
