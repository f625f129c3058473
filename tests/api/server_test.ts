import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { assert, assertEquals } from "../assert.ts";
import { unixAccepts, until } from "../helpers/wait.ts";
import { expectStatus, health, startTestApi, statusName, type TestApi } from "./helpers.ts";
import { VERSION } from "../../api/server.ts";
import type { Network, NetworkEvent, Nic, NicEvent } from "../../api/proto_types.ts";

const NODE_CLIENT = new URL("./fixtures/node_client.mjs", import.meta.url).pathname;

async function network(t: TestApi, name: string, extra: Partial<Network> = {}): Promise<Network> {
  return await t.client.call("CreateNetwork", {
    name,
    ipv4_enabled: true,
    ipv4_subnet: "10.20.0.0/24",
    ipv6_enabled: true,
    ipv6_prefix: "fd00:20::/64",
    dns_servers: ["10.20.0.53"],
    ...extra,
  });
}

/** Everything a client can see plus the audit log: must not change on a refused request. */
async function snapshot(t: TestApi): Promise<string> {
  const nets = await t.client.call("ListNetworks", {});
  const nics = await t.client.call("ListNics", {});
  return JSON.stringify([nets, nics, t.store.audit().length, t.dataplane.sockets().sort()]);
}

Deno.test("GetVersion, health and reflection answer", async () => {
  await using t = await startTestApi();
  assertEquals(await t.client.call("GetVersion", {}), { version: VERSION });
  assertEquals(await health(t.target, ""), "SERVING");
  assertEquals(await health(t.target, "mvirt.net.NetService"), "SERVING");
  assertEquals(await health(t.target, "nope"), "NOT_FOUND");
  await t.link.stop();
  assertEquals(await health(t.target, ""), "SERVING", "the process still serves");
  assertEquals(
    await health(t.target, "mvirt.net.NetService"),
    "NOT_SERVING",
    "no vNIC can be created without the dataplane",
  );

  const dir = new URL("../../node_modules/@grpc/reflection/build/proto/", import.meta.url).pathname;
  const def = protoLoader.loadSync("grpc/reflection/v1/reflection.proto", { includeDirs: [dir] });
  const reflection = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
  };
  const r = new reflection.grpc.reflection.v1.ServerReflection(
    t.target,
    grpc.credentials.createInsecure(),
  ) as unknown as grpc.Client & { ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, never> };
  const stream = r.ServerReflectionInfo();
  const answer = new Promise<{ listServicesResponse: { service: Array<{ name: string }> } }>(
    (resolve, reject) => {
      stream.on("data", resolve);
      stream.on("error", reject);
    },
  );
  stream.write({ listServices: "" });
  const names = (await answer).listServicesResponse.service.map((s) => s.name);
  assert(names.includes("mvirt.net.NetService"), names.join());
  assert(names.includes("grpc.health.v1.Health"), names.join());
  assert(names.includes("mvirt.net.diag.Diagnostics"), names.join());
  stream.end();
  r.close();
});

Deno.test("networks: create, get by id and name, list, update, delete", async () => {
  await using t = await startTestApi();
  const id = crypto.randomUUID();
  const net = await network(t, "blue", { id, ntp_servers: ["pool.ntp.org"], is_public: true });
  assertEquals(net.id, id, "caller-chosen id honoured");
  assertEquals(net.ipv4_subnet, "10.20.0.0/24");
  assertEquals(net.ipv6_prefix, "fd00:20::/64");
  assertEquals(net.is_public, true);
  assertEquals(net.nic_count, 0);
  assert(!Number.isNaN(Date.parse(net.created_at)));
  assertEquals(await t.client.call("GetNetwork", { id }), net);
  assertEquals(await t.client.call("GetNetwork", { name: "blue" }), net);
  const v6only = await t.client.call("CreateNetwork", {
    name: "green",
    ipv6_enabled: true,
    ipv6_prefix: "fd00:21::/64",
  });
  assertEquals([v6only.ipv4_enabled, v6only.ipv4_subnet], [false, ""]);
  assertEquals((await t.client.call("ListNetworks", {})).networks.map((n) => n.name), [
    "blue",
    "green",
  ]);
  const up = await t.client.call("UpdateNetwork", {
    id,
    dns_servers: ["1.1.1.1", "2606:4700:4700::1111"],
    ntp_servers: [],
  });
  assertEquals(up.dns_servers, ["1.1.1.1", "2606:4700:4700::1111"]);
  assertEquals(up.ntp_servers, []);
  assertEquals(up.ipv4_subnet, net.ipv4_subnet);
  assert(up.updated_at >= net.updated_at);
  assertEquals(await t.client.call("DeleteNetwork", { id }), { deleted: true, nics_deleted: 0 });
  await expectStatus(t.client.fail("GetNetwork", { id }), "NOT_FOUND", id);
  const actions = t.store.audit({ objectId: id }).map((a) => a.action);
  assertEquals(actions, ["network.create", "network.update", "network.delete"]);
  assert(t.store.audit({ objectId: id })[0].actor.includes("127.0.0.1"), "audit names the peer");
});

Deno.test("network errors carry the right status and change nothing", async () => {
  await using t = await startTestApi();
  await network(t, "blue", { is_public: true });
  const before = await snapshot(t);
  await expectStatus(
    t.client.fail("CreateNetwork", {
      ...{ name: "blue" },
      ipv4_enabled: true,
      ipv4_subnet: "10.30.0.0/24",
    }),
    "ALREADY_EXISTS",
    "name",
    "blue",
  );
  await expectStatus(
    t.client.fail("CreateNetwork", { name: "x", ipv4_enabled: true, ipv4_subnet: "10.30.0.1/24" }),
    "INVALID_ARGUMENT",
    "ipv4_subnet",
    "10.30.0.1/24",
  );
  await expectStatus(
    t.client.fail("CreateNetwork", { name: "x" }),
    "INVALID_ARGUMENT",
    "at least one",
  );
  await expectStatus(
    t.client.fail("CreateNetwork", { name: "", ipv4_enabled: true, ipv4_subnet: "10.30.0.0/24" }),
    "INVALID_ARGUMENT",
    "name",
  );
  await expectStatus(
    t.client.fail("CreateNetwork", { name: "x", ipv6_enabled: true, ipv6_prefix: "fd00::/100" }),
    "INVALID_ARGUMENT",
    "ipv6_prefix",
    "fd00::/100",
  );
  await expectStatus(
    t.client.fail("CreateNetwork", {
      name: "pub2",
      is_public: true,
      ipv4_enabled: true,
      ipv4_subnet: "10.20.0.0/16",
    }),
    "FAILED_PRECONDITION",
    "ipv4_subnet",
    "10.20.0.0/16",
    "blue",
  );
  await expectStatus(t.client.fail("GetNetwork", { name: "nope" }), "NOT_FOUND", "nope");
  await expectStatus(t.client.fail("GetNetwork", {}), "INVALID_ARGUMENT", "identifier");
  await expectStatus(t.client.fail("GetNetwork", { id: "zzz" }), "INVALID_ARGUMENT", "id", "zzz");
  await expectStatus(t.client.fail("UpdateNetwork", { id: crypto.randomUUID() }), "NOT_FOUND");
  await expectStatus(
    t.client.fail("UpdateNetwork", {
      id: (await t.client.call("GetNetwork", { name: "blue" })).id,
      dns_servers: ["not-an-ip"],
    }),
    "INVALID_ARGUMENT",
    "dns_servers",
    "not-an-ip",
  );
  await expectStatus(t.client.fail("DeleteNetwork", { id: crypto.randomUUID() }), "NOT_FOUND");
  assertEquals(await snapshot(t), before);
  // A private network may overlap a public one (it is never routed to the host).
  await network(t, "private-overlap", { ipv4_subnet: "10.20.0.0/16", ipv6_prefix: "fd00:99::/64" });
});

Deno.test("CreateNic end to end: allocation, MAC, socket ready before the answer", async () => {
  await using t = await startTestApi();
  const net = await network(t, "blue");
  const nic = await t.client.call("CreateNic", { network_id: "blue", name: "web-1" });
  assertEquals(nic.network_id, net.id);
  assertEquals(nic.ipv4_address, "10.20.0.1");
  assert(nic.ipv6_address.startsWith("fd00:20::"), nic.ipv6_address);
  assert(/^02(:[0-9a-f]{2}){5}$/.test(nic.mac_address), nic.mac_address);
  assertEquals(nic.socket_path, `${t.socketDir}/${nic.id}.sock`);
  assertEquals(nic.state, "NIC_STATE_CREATED");
  assert(await unixAccepts(nic.socket_path), "socket accepts connections when CreateNic answers");
  const second = await t.client.call("CreateNic", {
    network_id: net.id,
    id: "6F1C0C57-0F44-4C8B-9C39-4E4C6D1A0B0E",
    mac_address: "02:AA:BB:CC:DD:EE",
    ipv4_address: "10.20.0.77",
    ipv6_address: "fd00:20:0:0::77",
    routed_ipv4_prefixes: ["192.168.50.0/24"],
    routed_ipv6_prefixes: ["fd99::/56"],
  });
  assertEquals(second.id, "6f1c0c57-0f44-4c8b-9c39-4e4c6d1a0b0e");
  assertEquals(second.mac_address, "02:aa:bb:cc:dd:ee");
  assertEquals([second.ipv4_address, second.ipv6_address], ["10.20.0.77", "fd00:20::77"]);
  assertEquals(second.routed_ipv4_prefixes, ["192.168.50.0/24"]);
  assertEquals(second.name, "");
  const third = await t.client.call("CreateNic", { network_id: "blue" });
  assertEquals(third.ipv4_address, "10.20.0.2", "lowest free address");
  assertEquals((await t.client.call("GetNetwork", { name: "blue" })).nic_count, 3);
  assertEquals(await t.client.call("GetNic", { id: nic.id }), nic);
  assertEquals(await t.client.call("GetNic", { name: "web-1" }), nic);
  assertEquals((await t.client.call("ListNics", { network_id: "blue" })).nics.length, 3);
  assertEquals((await t.client.call("ListNics", {})).nics.length, 3);
});

Deno.test("CreateNic errors change nothing, and a dataplane failure leaves nothing behind", async () => {
  await using t = await startTestApi();
  await network(t, "blue");
  await network(t, "v6", { ipv4_enabled: false, ipv4_subnet: "", ipv6_prefix: "fd00:30::/64" });
  const first = await t.client.call("CreateNic", { network_id: "blue", name: "a" });
  const before = await snapshot(t);
  const fail = (req: Partial<Nic> & { id?: string }) => t.client.fail("CreateNic", req);
  await expectStatus(fail({ network_id: "nope" }), "NOT_FOUND", "nope");
  await expectStatus(fail({ network_id: "" }), "INVALID_ARGUMENT", "network_id");
  await expectStatus(fail({ network_id: "blue", name: "a" }), "ALREADY_EXISTS", "name", "a");
  await expectStatus(fail({ network_id: "blue", id: first.id }), "ALREADY_EXISTS", first.id);
  await expectStatus(
    fail({ network_id: "blue", ipv4_address: "10.20.0.1" }),
    "ALREADY_EXISTS",
    "10.20.0.1",
  );
  await expectStatus(
    fail({ network_id: "blue", ipv4_address: "10.21.0.1" }),
    "INVALID_ARGUMENT",
    "ipv4_address",
    "10.20.0.0/24",
  );
  await expectStatus(
    fail({ network_id: "blue", ipv4_address: "10.20.0.255" }),
    "INVALID_ARGUMENT",
    "broadcast",
  );
  await expectStatus(
    fail({ network_id: "blue", ipv6_address: "fd00:21::1" }),
    "INVALID_ARGUMENT",
    "ipv6_address",
  );
  await expectStatus(
    fail({ network_id: "v6", ipv4_address: "10.0.0.1" }),
    "FAILED_PRECONDITION",
    "no IPv4",
  );
  await expectStatus(
    fail({ network_id: "blue", mac_address: first.mac_address }),
    "ALREADY_EXISTS",
    first.mac_address,
  );
  await expectStatus(
    fail({ network_id: "blue", mac_address: "03:00:00:00:00:01" }),
    "INVALID_ARGUMENT",
    "multicast",
  );
  await expectStatus(
    fail({ network_id: "blue", routed_ipv4_prefixes: ["10.20.0.0/28"] }),
    "INVALID_ARGUMENT",
    "routed_ipv4_prefixes",
  );
  await expectStatus(
    fail({ network_id: "blue", id: "not-a-uuid" }),
    "INVALID_ARGUMENT",
    "id",
    "not-a-uuid",
  );
  assertEquals(await snapshot(t), before);

  const audited = t.store.audit().length;
  t.dataplane.failNextUpsertNic("failed");
  const e = await expectStatus(
    fail({ network_id: "blue", name: "b", ipv4_address: "10.20.0.9" }),
    "UNAVAILABLE",
    "refused",
  );
  assert(e.details.includes("dataplane"));
  assertEquals((await t.client.call("ListNics", {})).nics.map((n) => n.name), ["a"]);
  assertEquals(t.dataplane.sockets(), [first.id], "no socket left");
  const abandoned = t.store.audit({ afterSeq: audited }).map((a) => a.action);
  assertEquals(abandoned, ["nic.create", "nic.create.abandoned"]);
  // Name and address are free again.
  const b = await t.client.call("CreateNic", {
    network_id: "blue",
    name: "b",
    ipv4_address: "10.20.0.9",
  });
  assertEquals(b.ipv4_address, "10.20.0.9");

  // Dataplane away: clean UNAVAILABLE, nothing stored.
  await t.link.stop();
  const n = (await t.client.call("ListNics", {})).nics.length;
  await expectStatus(fail({ network_id: "blue", name: "c" }), "UNAVAILABLE", "dataplane");
  assertEquals((await t.client.call("ListNics", {})).nics.length, n);
});

Deno.test("UpdateNic, AttachNic, state reports, DeleteNic", async () => {
  await using t = await startTestApi();
  await network(t, "blue");
  const nic = await t.client.call("CreateNic", { network_id: "blue", name: "a" });
  const up = await t.client.call("UpdateNic", {
    id: nic.id,
    routed_ipv4_prefixes: ["192.168.0.0/24", "192.168.9.0/24"],
    routed_ipv6_prefixes: ["fd77::/64"],
  });
  assertEquals(up.routed_ipv4_prefixes, ["192.168.0.0/24", "192.168.9.0/24"]);
  assertEquals(up.routed_ipv6_prefixes, ["fd77::/64"]);
  assertEquals(up.ipv4_address, nic.ipv4_address);
  const last = t.dataplane.requests.at(-1);
  assert(last?.type === "UpsertNic" && last.nic.routedIpv4Prefixes.length === 2, "routes pushed");
  const other = await t.client.call("CreateNic", { network_id: "blue", name: "b" });
  await expectStatus(
    t.client.fail("UpdateNic", { id: other.id, routed_ipv4_prefixes: ["192.168.9.128/25"] }),
    "ALREADY_EXISTS",
    "192.168.9.0/24",
  );
  assertEquals(
    (await t.client.call("UpdateNic", { id: nic.id })).routed_ipv4_prefixes,
    [],
    "lists are replaced",
  );

  const att = await t.client.call("AttachNic", { id: nic.id });
  assertEquals(att.attached, true);
  assert(att.message.includes(nic.socket_path), att.message);
  await expectStatus(t.client.fail("AttachNic", { id: crypto.randomUUID() }), "NOT_FOUND");

  t.dataplane.report({ id: nic.id, state: "ACTIVE" });
  await until(
    async () => (await t.client.call("GetNic", { id: nic.id })).state === "NIC_STATE_ACTIVE",
    5000,
    "GetNic to show the state the dataplane reported",
  );

  assertEquals(await t.client.call("DeleteNic", { id: nic.id }), { deleted: true });
  await expectStatus(t.client.fail("GetNic", { id: nic.id }), "NOT_FOUND");
  await expectStatus(t.client.fail("DeleteNic", { id: nic.id }), "NOT_FOUND", nic.id);
  assertEquals(t.dataplane.sockets(), [other.id]);
  assertEquals(
    (await t.client.call("CreateNic", { network_id: "blue" })).ipv4_address,
    nic.ipv4_address,
    "a deleted vNIC's address is free again",
  );
});

Deno.test("DeleteNetwork refuses a network with vNICs unless forced", async () => {
  await using t = await startTestApi();
  const net = await network(t, "blue");
  const a = await t.client.call("CreateNic", { network_id: "blue" });
  await t.client.call("CreateNic", { network_id: "blue" });
  await expectStatus(
    t.client.fail("DeleteNetwork", { id: net.id }),
    "FAILED_PRECONDITION",
    "2 vNIC",
    "force",
  );
  assertEquals((await t.client.call("ListNics", {})).nics.length, 2);
  assertEquals(await t.client.call("DeleteNetwork", { id: net.id, force: true }), {
    deleted: true,
    nics_deleted: 2,
  });
  assertEquals((await t.client.call("ListNics", {})).nics, []);
  assertEquals(t.dataplane.sockets(), []);
  assert(!(await unixAccepts(a.socket_path)));
  assert(t.dataplane.requests.some((r) => r.type === "RemoveNetwork" && r.id === net.id));
});

Deno.test("200 parallel CreateNic on a /24: distinct addresses, then RESOURCE_EXHAUSTED", async () => {
  await using t = await startTestApi();
  await network(t, "big");
  const results = await Promise.allSettled(
    Array.from({ length: 200 }, () => t.client.call("CreateNic", { network_id: "big" })),
  );
  const nics = results.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  const failed = results.flatMap((r) => r.status === "rejected" ? [r.reason.message] : []);
  assertEquals(nics.length, 200, `a /24 has 254 host addresses; failures: ${failed.slice(0, 3)}`);
  assertEquals(new Set(nics.map((n) => n.ipv4_address)).size, 200);
  assertEquals(new Set(nics.map((n) => n.ipv6_address)).size, 200);
  assertEquals(new Set(nics.map((n) => n.mac_address)).size, 200);

  await network(t, "small", { ipv4_subnet: "10.40.0.0/26", ipv6_prefix: "fd00:40::/64" });
  const small = await Promise.allSettled(
    Array.from({ length: 100 }, () => t.client.call("CreateNic", { network_id: "small" })),
  );
  const ok = small.flatMap((r) => r.status === "fulfilled" ? [r.value.ipv4_address] : []);
  const errors = small.flatMap((r) => r.status === "rejected" ? [r.reason] : []);
  assertEquals(ok.length, 62, "a /26 has 62 host addresses");
  assertEquals(new Set(ok).size, 62);
  assertEquals(errors.length, 38);
  for (const e of errors) {
    assertEquals(statusName(e.code), "RESOURCE_EXHAUSTED", e.details);
    assert(e.details.includes("10.40.0.0/26"), e.details);
  }
  assertEquals((await t.client.call("ListNics", { network_id: "small" })).nics.length, 62);
});

function collect<E>(stream: grpc.ClientReadableStream<E>, until: (events: E[]) => boolean) {
  const events: E[] = [];
  return new Promise<E[]>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`watch timed out with ${events.length}`)),
      10_000,
    );
    stream.on("data", (e: E) => {
      events.push(e);
      if (until(events)) {
        clearTimeout(timer);
        resolve(events);
      }
    });
    stream.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

Deno.test("Watch streams carry every change in order, empty payload on delete", async () => {
  await using t = await startTestApi();
  const nicStream = t.client.raw.WatchNics({}) as grpc.ClientReadableStream<NicEvent>;
  const netStream = t.client.raw.WatchNetworks({}) as grpc.ClientReadableStream<NetworkEvent>;
  await until(
    () => t.api.watchers.nics === 1 && t.api.watchers.networks === 1,
    5000,
    "both watchers",
  );
  const nicEvents = collect(nicStream, (es) => es.length === 4);
  const netEvents = collect(netStream, (es) => es.length === 5);
  const net = await network(t, "blue");
  const a = await t.client.call("CreateNic", { network_id: "blue", name: "a" });
  await t.client.call("UpdateNic", { id: a.id, routed_ipv4_prefixes: ["192.168.1.0/24"] });
  t.dataplane.report({ id: a.id, state: "ACTIVE" });
  await until(
    async () => (await t.client.call("GetNic", { id: a.id })).state === "NIC_STATE_ACTIVE",
    5000,
    "the state report",
  );
  await t.client.call("UpdateNetwork", { id: net.id, dns_servers: ["9.9.9.9"] });
  await t.client.call("DeleteNic", { id: a.id });
  await t.client.call("DeleteNetwork", { id: net.id });
  const nics = await nicEvents;
  assertEquals(nics.map((e) => [e.nic_id, e._nic === "nic"]), [
    [a.id, true],
    [a.id, true],
    [a.id, true],
    [a.id, false],
  ]);
  assertEquals(nics[0].nic, a);
  assertEquals(nics[1].nic?.routed_ipv4_prefixes, ["192.168.1.0/24"]);
  assertEquals(nics[2].nic?.state, "NIC_STATE_ACTIVE");
  assert(nics.every((e, i) => i === 0 || e.timestamp >= nics[i - 1].timestamp));
  const nets = await netEvents;
  // created, a vNIC joined, DNS changed, the vNIC left, deleted
  assertEquals(nets.map((e) => e.network?.nic_count ?? null), [0, 1, 1, 0, null]);
  assertEquals(nets[2].network?.dns_servers, ["9.9.9.9"]);
  assertEquals(nets.map((e) => e.network_id), Array(5).fill(net.id));
  assertEquals(nets[4]._network, undefined);
  nicStream.cancel();
  netStream.cancel();
});

Deno.test("a frozen watcher is disconnected with RESOURCE_EXHAUSTED; the API never blocks", async () => {
  await using t = await startTestApi({ watchQueueLimit: 32 });
  const net = await network(t, "blue");
  // A paused grpc-js stream still drains the socket; a stopped process does not. That is the
  // slow watcher that matters: its TCP window fills and the server must not wait for it.
  const frozen = new Deno.Command("node", {
    args: [NODE_CLIENT, "watch", t.target],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const output = frozen.output();
  try {
    const fast = t.client.raw.WatchNetworks({}) as grpc.ClientReadableStream<NetworkEvent>;
    let fastSeen = 0;
    fast.on("data", () => fastSeen++);
    fast.on("error", () => {}); // CANCELLED by fast.cancel() below
    await until(() => t.api.watchers.networks === 2, 10_000, "both watchers");
    Deno.kill(frozen.pid, "SIGSTOP");
    // Eight long IPv6 DNS servers make each event about 400 bytes.
    const dns = Array.from({ length: 8 }, (_, i) => `fd00:1234:5678:9abc:def0:1234:5678:${i + 1}`);
    let updates = 0;
    let slowest = 0;
    while (t.api.watchers.networks === 2 && updates < 2000) {
      const t0 = performance.now();
      await t.client.call("UpdateNetwork", { id: net.id, dns_servers: dns.slice(updates % 8) });
      slowest = Math.max(slowest, performance.now() - t0);
      updates++;
    }
    assertEquals(t.api.watchers.networks, 1, `frozen watcher still connected after ${updates}`);
    assert(slowest < 1000, `an update took ${slowest} ms while a watcher lagged`);
    Deno.kill(frozen.pid, "SIGCONT");
    const end = JSON.parse(new TextDecoder().decode((await output).stdout));
    assertEquals(statusName(end.code), "RESOURCE_EXHAUSTED", end.details);
    assert(end.details.includes("32 events"), end.details);
    assert(end.events < updates, "the frozen watcher did not get everything");
    await until(() => fastSeen === updates, 5000, `all ${updates} events at the reading watcher`);
    fast.cancel();
  } finally {
    try {
      Deno.kill(frozen.pid, "SIGKILL");
    } catch {
      // Exited already.
    }
    await output;
  }
});
