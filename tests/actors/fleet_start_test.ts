/**
 * A vNIC's start in two halves: the fleet makes the device (the socket accepts) before the
 * vNIC's Worker runs, and the actor serves what connected meanwhile once it runs. The actor is
 * a stand-in (fixtures/gated_vnic.ts) whose start waits for a gate file, so the tests can look
 * at the fleet while a start is slow, make it fail, or delete the vNIC during it. The stand-in
 * also follows the topology broadcasts, so the tests check that running vNICs get changes as
 * deltas that add up to the network's topology.
 */
import { assert, assertEquals } from "../assert.ts";
import { Fleet } from "../../actors/fleet.ts";
import { nativeDeviceControl } from "../../actors/vnic.ts";
import { configureLogging, createLogger } from "../../daemon/log.ts";
import type { DesiredNetwork, DesiredNic, NicStatus } from "../../daemon/protocol.ts";
import { decodeHeader, encodeMessage, HEADER_SIZE, Request } from "../../vhost/protocol.ts";
import { unixAccepts, until, withTimeout } from "../helpers/wait.ts";
import { exists } from "../../bench/lib/proc.ts";
import { GATE_ENV, GATE_FAIL, type KnownTopology } from "./fixtures/gated_vnic.ts";

const GATED_VNIC = new URL("./fixtures/gated_vnic.ts", import.meta.url);
/** Bound of any step that does not wait for the gate. */
const STEP_MS = 10_000;
/** How long a message to a vNIC whose actor does not run stays unanswered in the test. */
const UNANSWERED_MS = 300;
/** The first retry of a failed start comes after 1 s; this leaves room for a loaded machine. */
const RETRY_MS = 20_000;

const NETWORK: DesiredNetwork = {
  id: "net-1",
  name: "gated",
  ipv4Subnet: "10.71.0.0/24",
  ipv6Prefix: "",
  dnsServers: [],
  ntpServers: [],
  isPublic: false,
  mtu: 1500,
};

function nic(dir: string, n: number): DesiredNic {
  const id = `00000000-0000-4000-8000-00000000000${n}`;
  return {
    id,
    name: `g${n}`,
    networkId: NETWORK.id,
    mac: `02:00:00:00:71:0${n}`,
    ipv4: `10.71.0.${10 + n}`,
    ipv6: "",
    routedIpv4Prefixes: [],
    routedIpv6Prefixes: [],
    socketPath: `${dir}/${id}.sock`,
    securityGroupIds: [],
    rules: [],
  };
}

interface Harness extends AsyncDisposable {
  fleet: Fleet;
  dir: string;
  gate: string;
  statuses: NicStatus[];
}

async function harness(): Promise<Harness> {
  configureLogging({ level: "error" });
  const dir = Deno.makeTempDirSync({ prefix: "mvirt-fleet-start-" });
  const gate = `${dir}/gate`;
  // Read by the stand-in actors' Workers, which share this process's environment.
  Deno.env.set(GATE_ENV, gate);
  const statuses: NicStatus[] = [];
  const fleet = new Fleet({
    log: createLogger("test/fleet"),
    onNicStatus: (s) => statuses.push(s),
    onEscalate: (reason) => {
      throw new Error(`unexpected escalation: ${reason}`);
    },
    devices: nativeDeviceControl(),
    vnicModule: GATED_VNIC,
  });
  await fleet.upsertNetwork(NETWORK);
  return {
    fleet,
    dir,
    gate,
    statuses,
    async [Symbol.asyncDispose]() {
      // Whatever a test left gated starts now, so that stop() can end it.
      Deno.writeTextFileSync(gate, "open");
      await fleet.stop();
      Deno.env.delete(GATE_ENV);
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** Workers the fleet took from its vNIC pool (or started for want of one) so far. */
function taken(h: Harness): number {
  const s = h.fleet.vnicPoolStats();
  return s.takenWarm + s.takenLoading + s.startedOnDemand;
}

/** Connects as a VMM does and asks for the device's features. */
async function askFeatures(path: string): Promise<Deno.UnixConn> {
  const conn = await Deno.connect({ transport: "unix", path });
  await conn.write(encodeMessage(Request.GET_FEATURES, 0, new Uint8Array(0)));
  return conn;
}

/** The request code of the first reply on `conn` (one read, shared by whoever waits). */
function firstReply(conn: Deno.UnixConn): Promise<number | null> {
  const buf = new Uint8Array(HEADER_SIZE + 8);
  return conn.read(buf).then((
    n,
  ) => (n !== null && n >= HEADER_SIZE ? decodeHeader(buf).request : null));
}

/** What `p` resolves to, or "none" if it does not within `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | "none"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<"none">((r) => (timer = setTimeout(() => r("none"), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name: "fleet: upsertNic answers before the vNIC's Worker is taken from the pool",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // Taking a Worker starts a replacement, and `new Worker` blocks the fleet's thread while
    // V8 makes the isolate: the answer (and so CreateNic) must not wait for that.
    await using h = await harness();
    const n = nic(h.dir, 1);
    const before = taken(h);
    const status = await withTimeout(h.fleet.upsertNic(n), STEP_MS, "upsertNic");
    assertEquals(status.state, "CREATED");
    assertEquals(taken(h), before, "no Worker taken when the answer came");
    await until(() => taken(h) === before + 1, STEP_MS, "the vNIC's Worker taken afterwards");
  },
});

Deno.test({
  name: "fleet: a new vNIC's socket accepts before its actor runs; the actor then serves it",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using h = await harness();
    const n = nic(h.dir, 1);
    const status = await withTimeout(h.fleet.upsertNic(n), STEP_MS, "upsertNic while gated");
    assertEquals(status.state, "CREATED");
    assert(await unixAccepts(n.socketPath), "the socket accepts while the actor is not running");
    assertEquals(h.fleet.actor(`vnic:${n.id}`), null, "the actor is still starting");

    // A VMM that connects now waits in the socket, unanswered, until the actor runs.
    const conn = await askFeatures(n.socketPath);
    try {
      const reply = firstReply(conn);
      assertEquals(await within(reply, UNANSWERED_MS), "none", "no answer before the actor runs");
      Deno.writeTextFileSync(h.gate, "open");
      assertEquals(await within(reply, STEP_MS), Request.GET_FEATURES, "answered once it runs");
    } finally {
      conn.close();
    }
    assert(h.fleet.actor(`vnic:${n.id}`) !== null, "the actor runs");

    await h.fleet.removeNic(n.id);
    assert(!exists(n.socketPath), "the socket file is gone with the vNIC");
  },
});

Deno.test({
  name: "fleet: a vNIC whose actor fails to start has its device closed, is reported, and retried",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using h = await harness();
    Deno.writeTextFileSync(h.gate, GATE_FAIL);
    const n = nic(h.dir, 2);
    assertEquals((await h.fleet.upsertNic(n)).state, "CREATED");
    await until(
      () => h.statuses.some((s) => s.id === n.id && s.state === "ERROR"),
      STEP_MS,
      "the failed start reported",
    );
    // Checked at once: the first retry comes 1 s after the failure.
    assert(!exists(n.socketPath), "the failed vNIC's socket file was removed");

    Deno.writeTextFileSync(h.gate, "open");
    await until(
      () => h.statuses.some((s) => s.id === n.id && s.state === "CREATED"),
      RETRY_MS,
      "the vNIC started on a retry",
    );
    const conn = await askFeatures(n.socketPath);
    try {
      assertEquals(await within(firstReply(conn), STEP_MS), Request.GET_FEATURES);
    } finally {
      conn.close();
    }
  },
});

Deno.test({
  name: "fleet: a vNIC deleted while its actor starts leaves no socket and no actor",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using h = await harness();
    const n = nic(h.dir, 3);
    const before = taken(h);
    await h.fleet.upsertNic(n);
    assert(await unixAccepts(n.socketPath));
    await until(() => taken(h) > before, STEP_MS, "the start under way");
    const removed = h.fleet.removeNic(n.id);
    // The removal waits for the start under way, then stops the actor it started.
    const timer = setTimeout(() => Deno.writeTextFileSync(h.gate, "open"), UNANSWERED_MS);
    try {
      await withTimeout(removed, STEP_MS, "removeNic during the start");
    } finally {
      clearTimeout(timer);
    }
    assert(!exists(n.socketPath), "the socket file is gone");
    assertEquals(h.fleet.actor(`vnic:${n.id}`), null, "no actor runs for the deleted vNIC");
  },
});

Deno.test({
  name: "fleet: a vNIC deleted as soon as upsertNic answered never starts an actor",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using h = await harness();
    const n = nic(h.dir, 4);
    const before = taken(h);
    await h.fleet.upsertNic(n);
    await withTimeout(h.fleet.removeNic(n.id), STEP_MS, "removeNic before the start");
    assert(!exists(n.socketPath), "the socket file is gone");
    // Long enough for a start that was not cancelled to take its Worker.
    await new Promise((r) => setTimeout(r, UNANSWERED_MS));
    assertEquals(taken(h), before, "no Worker was taken for it");
    assertEquals(h.fleet.actor(`vnic:${n.id}`), null);
  },
});

/** What every running vNIC of `nics` knows of the topology, once all agree with `want`. */
async function settled(
  h: Harness,
  nics: DesiredNic[],
  want: { peers: string[]; routes: Record<string, string> },
): Promise<KnownTopology[]> {
  let last: KnownTopology[] = [];
  const agree = async () => {
    last = [];
    for (const n of nics) {
      const ref = h.fleet.actor(`vnic:${n.id}`);
      if (!ref) return false;
      last.push(await ref.call<KnownTopology>({ type: "GetTopology" }));
    }
    return last.every((k) =>
      JSON.stringify(Object.keys(k.peers).sort()) === JSON.stringify([...want.peers].sort()) &&
      Object.values(k.peers).every((handle) => handle !== null) &&
      JSON.stringify(Object.entries(k.routes).sort()) ===
        JSON.stringify(Object.entries(want.routes).sort())
    );
  };
  try {
    await until(agree, STEP_MS, "every vNIC to know the topology");
  } catch (e) {
    throw new Error(`${(e as Error).message}; they know ${JSON.stringify(last)}`);
  }
  return last;
}

Deno.test({
  name: "fleet: running vNICs get topology changes as deltas that add up to the topology",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using h = await harness();
    Deno.writeTextFileSync(h.gate, "open");
    const [a, b, c] = [nic(h.dir, 4), nic(h.dir, 5), nic(h.dir, 6)];
    for (const n of [a, b, c]) await h.fleet.upsertNic(n);
    const host = (n: DesiredNic) => `${n.ipv4}/32`;
    const before = await settled(h, [a, b, c], {
      peers: [a.id, b.id, c.id],
      routes: { [host(a)]: a.id, [host(b)]: b.id, [host(c)]: c.id },
    });

    // A routed prefix added, a vNIC deleted, another one created.
    await h.fleet.upsertNic({ ...b, routedIpv4Prefixes: ["192.168.7.0/24"] });
    await h.fleet.removeNic(c.id);
    const d = nic(h.dir, 7);
    await h.fleet.upsertNic(d);
    const after = await settled(h, [a, b, d], {
      peers: [a.id, b.id, d.id],
      routes: {
        [host(a)]: a.id,
        [host(b)]: b.id,
        "192.168.7.0/24": b.id,
        [host(d)]: d.id,
      },
    });
    for (const i of [0, 1]) {
      assertEquals(after[i].fulls, before[i].fulls, "no whole topology sent to a running vNIC");
      assert(after[i].deltas > before[i].deltas, "the changes came as deltas");
    }
  },
});

Deno.test({
  name: "fleet: vNICs a sync starts get the whole topology once, at the end of the sync",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using h = await harness();
    Deno.writeTextFileSync(h.gate, "open");
    const nics = [nic(h.dir, 1), nic(h.dir, 2), nic(h.dir, 3)];
    const statuses = await withTimeout(h.fleet.sync([NETWORK], nics), STEP_MS, "sync");
    assertEquals(statuses.map((s) => s.state), ["CREATED", "CREATED", "CREATED"]);
    const known = await settled(h, nics, {
      peers: nics.map((n) => n.id),
      routes: Object.fromEntries(nics.map((n) => [`${n.ipv4}/32`, n.id])),
    });
    // Started without it during the sync (building it at every start cost O(N) each).
    for (const k of known) assertEquals(k.fulls, 1, "one whole topology, at the sync's end");
  },
});
