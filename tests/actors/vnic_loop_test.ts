/**
 * The vNIC loop's wake-ups, against the real daemon with in-process frontends: an idle vNIC
 * (IPv4 only, so no periodic RA is ever due and its poll waits without a timeout) is woken by a
 * peer's frame through its inbound notification, and by mail through its wake eventfd; a vNIC
 * that keeps moving frames still answers mail and stops when its vNIC is deleted.
 */
import { assert, assertEquals } from "../assert.ts";
import { dataplaneRequest, startDaemon } from "../helpers/daemon.ts";
import { sleep, until } from "../helpers/wait.ts";
import { connect, type NetClient, serving } from "../api/helpers.ts";
import { Frontend, TXQ } from "../harness/frontend.ts";
import { ALL_FEATURES, ALL_PROTOCOL_FEATURES } from "../harness/setup.ts";
import { numberedFrame, numberOf } from "../harness/numbered_frames.ts";
import { parseIpv4, parseMac } from "../../wire/mod.ts";
import { internetChecksum } from "../../wire/checksum.ts";
import { write16 } from "../../wire/bytes.ts";

const NETWORK = "loop";
const UDP_PORT = 9100;
/** Long enough for both loops to settle into their blocking poll. */
const IDLE_MS = 300;
/** Generous bound for one frame or one answer on a busy 2-core machine; an idle loop that is
 * not woken never answers. */
const PROMPT_MS = 3000;
const ROUNDS = 5;
const RX_POSTED = 64;
const RX_BUF = 2048;
const REGION = 0x400000;
const QSIZE = 256;
/** Frames the busy sender keeps in flight per tick, and the pause between ticks. */
const BURST = 8;
const TICK_MS = 1;

interface NicInfo {
  id: string;
  mac: Uint8Array;
  ipv4: Uint8Array;
  socketPath: string;
}

async function createNic(client: NetClient, name: string): Promise<NicInfo> {
  const n = await client.call("CreateNic", { network_id: NETWORK, name });
  return {
    id: n.id,
    mac: parseMac(n.mac_address) as Uint8Array,
    ipv4: parseIpv4(n.ipv4_address) as Uint8Array,
    socketPath: n.socket_path,
  };
}

function attach(nic: NicInfo): Frontend {
  const fe = Frontend.connect({ socketPath: nic.socketPath, regions: 2, regionSize: REGION });
  fe.negotiate({
    features: ALL_FEATURES,
    protocolFeatures: ALL_PROTOCOL_FEATURES,
    queueSize: QSIZE,
  });
  return fe;
}

function udpFrame(from: NicInfo, to: NicInfo, seq: number): Uint8Array {
  return numberedFrame(from, to.ipv4, UDP_PORT, seq);
}

/** The frame with a 4-byte IPv4 option (No Operation, RFC 791) after its header. */
function withIpOption(frame: Uint8Array): Uint8Array {
  const IP = 14;
  const OPTION = 4;
  const out = new Uint8Array(frame.length + OPTION);
  out.set(frame.subarray(0, IP + 20));
  out.fill(1, IP + 20, IP + 20 + OPTION); // NOP, NOP, NOP, NOP
  out.set(frame.subarray(IP + 20), IP + 20 + OPTION);
  out[IP] = 0x46;
  const total = ((out[IP + 2] << 8) | out[IP + 3]) + OPTION;
  out[IP + 2] = total >> 8;
  out[IP + 3] = total & 0xff;
  write16(out, IP + 10, 0);
  write16(out, IP + 10, internetChecksum(out.subarray(IP, IP + 20 + OPTION)));
  return out;
}

/** Sequence numbers of the test's UDP frames among what the guest received. */
function seqsOf(frames: { frame: Uint8Array }[]): number[] {
  const out: number[] = [];
  for (const { frame } of frames) {
    const seq = numberOf(frame, UDP_PORT);
    if (seq !== null) out.push(seq);
  }
  return out;
}

async function withPair(
  fn: (
    ctx: {
      client: NetClient;
      dataDir: string;
      a: NicInfo;
      b: NicInfo;
      feA: Frontend;
      feB: Frontend;
    },
  ) => Promise<void>,
): Promise<void> {
  await using d = await startDaemon();
  await serving(d.grpcTarget, d.log);
  const client = connect(d.grpcTarget);
  const frontends: Frontend[] = [];
  try {
    // IPv4 only: no RA is ever due, so an idle loop waits in poll without a timeout.
    await client.call("CreateNetwork", {
      name: NETWORK,
      ipv4_enabled: true,
      ipv4_subnet: "10.67.0.0/24",
    });
    const a = await createNic(client, "a");
    const b = await createNic(client, "b");
    const feA = attach(a);
    const feB = attach(b);
    frontends.push(feA, feB);
    for (const n of [a, b]) {
      await until(
        async () =>
          (await client.call("GetNic", { id: n.id })).state === "NIC_STATE_ACTIVE" as never,
        15_000,
        `vNIC ${n.id} active`,
      );
    }
    feB.postRx(RX_POSTED, RX_BUF);
    await fn({ client, dataDir: d.dataDir, a, b, feA, feB });
  } finally {
    for (const fe of frontends) fe.close();
    client.close();
  }
}

Deno.test({
  name: "vNIC loop: a peer's frame wakes an idle vNIC without mail",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withPair(async ({ dataDir, a, b, feA, feB }) => {
      // Every other frame carries an IP option: the shim's fast path leaves it to the router
      // in TypeScript, which hands it to B's inbound ring and wakes B's loop. The plain ones the
      // fast path delivers straight into B's guest, without B's loop.
      for (let seq = 0; seq < ROUNDS; seq++) {
        // Both loops go back to sleep; nobody posts to either actor from here on.
        await sleep(IDLE_MS);
        feA.rings[TXQ].takeUsed();
        feA.sendFrame(seq % 2 === 0 ? withIpOption(udpFrame(a, b, seq)) : udpFrame(a, b, seq));
        const t0 = performance.now();
        let got: number[] = [];
        await until(() => (got = seqsOf(feB.readRx())).length > 0, PROMPT_MS, `frame ${seq}`);
        assertEquals(got, [seq], "the frame arrived, once");
        feB.postRx(1, RX_BUF);
        console.log(
          `frame ${seq} delivered to the idle vNIC in ${(performance.now() - t0) | 0} ms`,
        );
      }
      const c = (await dataplaneRequest(dataDir, { type: "GetNicCounters", id: a.id })).counters;
      const plain = Math.floor(ROUNDS / 2);
      assertEquals(c.route_fast_forwarded, plain, "plain frames: the fast path");
      assertEquals(c.route_fast_direct, plain, "...straight into the idle peer's guest");
    });
  },
});

Deno.test({
  name: "vNIC loop: mail reaches an idle vNIC, and one that only moves frames, and stop ends it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withPair(async ({ client, dataDir, a, b, feA, feB }) => {
      for (let i = 0; i < ROUNDS; i++) {
        await sleep(IDLE_MS);
        const t0 = performance.now();
        const r = await dataplaneRequest(dataDir, { type: "GetNicCounters", id: b.id });
        assertEquals(r.type, "Counters", "an idle vNIC answers");
        console.log(`idle vNIC answered in ${(performance.now() - t0) | 0} ms`);
      }
      // a sends without pause: b's loop moves frames on every iteration.
      let sending = true;
      let sent = 0;
      let received = 0;
      const traffic = (async () => {
        while (sending) {
          feA.rings[TXQ].takeUsed();
          for (let i = 0; i < BURST; i++) {
            try {
              feA.sendFrame(udpFrame(a, b, sent));
              sent++;
            } catch {
              break; // TX ring full: the daemon has not taken the last burst yet.
            }
          }
          const got = feB.readRx();
          received += seqsOf(got).length;
          feB.postRx(got.reduce((n, g) => n + g.numBuffers, 0), RX_BUF);
          await sleep(TICK_MS);
        }
      })();
      try {
        await until(() => received > 100, PROMPT_MS * 2, "traffic flows");
        const before = received;
        for (let i = 0; i < ROUNDS; i++) {
          const r = await dataplaneRequest(dataDir, { type: "GetNicCounters", id: b.id });
          assertEquals(r.type, "Counters", "a busy vNIC answers");
          assert(r.counters.rx_packets > 0, "its counters show the traffic");
        }
        await until(() => received > before, PROMPT_MS, "frames still moving after the calls");
        // Deleting the vNIC stops its actor while frames still arrive: the socket goes away.
        const t0 = performance.now();
        await client.call("DeleteNic", { id: b.id });
        await until(
          () => {
            try {
              Deno.statSync(b.socketPath);
              return false;
            } catch {
              return true;
            }
          },
          PROMPT_MS,
          "the deleted vNIC's socket removed",
        );
        console.log(
          `busy vNIC stopped in ${(performance.now() - t0) | 0} ms (${received} frames received)`,
        );
      } finally {
        sending = false;
        await traffic;
      }
    });
  },
});
