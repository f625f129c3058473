import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals, assertThrows } from "../assert.ts";
import { ApiError, Status } from "../../api/errors.ts";
import { SCHEMA_VERSION, Store } from "../../api/store.ts";
import { cryptoRandom } from "../../api/allocate.ts";
import { validateNetwork, validateNicSpec } from "../../api/validate.ts";

const WRITER = new URL("./fixtures/store_writer.ts", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;

async function tempStore(): Promise<{ path: string; store: Store } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "mvirt-net-store-" });
  const path = `${dir}/store.db`;
  const store = Store.open(path);
  return {
    path,
    store,
    async [Symbol.asyncDispose]() {
      store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function net(name: string, v4 = "10.0.0.0/24", extra: Record<string, unknown> = {}) {
  return validateNetwork({
    id: "",
    name,
    ipv4_enabled: true,
    ipv4_subnet: v4,
    ipv6_enabled: false,
    ipv6_prefix: "",
    dns_servers: [],
    ntp_servers: [],
    is_public: false,
    ...extra,
  });
}

function nic(network: string, extra: Record<string, unknown> = {}) {
  return validateNicSpec({
    id: "",
    name: "",
    network_id: network,
    mac_address: "",
    ipv4_address: "",
    ipv6_address: "",
    routed_ipv4_prefixes: [],
    routed_ipv6_prefixes: [],
    ...extra,
  });
}

Deno.test("store: migrations applied once, WAL and foreign keys on", async () => {
  await using t = await tempStore();
  assertEquals(t.store.schemaVersion(), SCHEMA_VERSION);
  t.store.createNetwork(net("a"), "test");
  t.store.close();
  const again = Store.open(t.path);
  assertEquals(again.schemaVersion(), SCHEMA_VERSION);
  assertEquals(again.listNetworks().map((n) => n.name), ["a"], "reopening keeps data");
  again.close();
  const db = new DatabaseSync(t.path);
  assertEquals({ ...db.prepare("PRAGMA journal_mode").get() }, { journal_mode: "wal" });
  db.exec("UPDATE schema_version SET version = 999");
  db.close();
  const e = assertThrows(() => Store.open(t.path), Error, "newer");
  assert(e.message.includes("999"));
});

Deno.test("store: constraints hold even against direct SQL", async () => {
  await using t = await tempStore();
  const n = t.store.createNetwork(net("a"), "test");
  const a = t.store.createNic(nic("a"), "test", cryptoRandom);
  t.store.close();
  const db = new DatabaseSync(t.path);
  db.exec("PRAGMA foreign_keys = ON");
  const errcode = (sql: string) => {
    try {
      // Prepared statements carry SQLite's extended error code; exec() does not.
      db.prepare(sql).run();
      return 0;
    } catch (e) {
      return (e as { errcode: number }).errcode;
    }
  };
  const UNIQUE = 2067;
  const FOREIGN_KEY = 787;
  const other = crypto.randomUUID();
  assertEquals(
    errcode(
      `INSERT INTO nics VALUES ('${other}', NULL, '${n.id}', '${a.mac_address}', 0, 'x', 'x')`,
    ),
    UNIQUE,
    "MACs are unique",
  );
  db.exec(
    `INSERT INTO nics VALUES ('${other}', NULL, '${n.id}', '02:00:00:00:00:09', 0, 'x', 'x')`,
  );
  assertEquals(
    errcode(`INSERT INTO addresses VALUES ('${n.id}', 4, '${a.ipv4_address}', '${other}')`),
    UNIQUE,
    "one address per network and family",
  );
  assertEquals(
    errcode(
      `INSERT INTO nics VALUES ('${crypto.randomUUID()}', NULL, 'nope', '02:00:00:00:00:0a', 0, 'x', 'x')`,
    ),
    FOREIGN_KEY,
  );
  db.exec(`DELETE FROM networks WHERE id = '${n.id}'`);
  assertEquals({ ...db.prepare("SELECT COUNT(*) AS c FROM addresses").get() }, { c: 0 }, "cascade");
  db.close();
});

Deno.test("store: audit log records who did what, queryable", async () => {
  await using t = await tempStore();
  const n = t.store.createNetwork(net("a"), "ipv4:127.0.0.1:5000");
  const a = t.store.createNic(nic("a", { name: "x" }), "ipv4:127.0.0.1:5001", cryptoRandom);
  t.store.confirmNic(a.id);
  t.store.updateNic(a.id, ["192.168.0.0/24"], [], "cli");
  t.store.deleteNic(a.id, "cli");
  t.store.deleteNetwork(n.id, false, "cli");
  const all = t.store.audit();
  assertEquals(all.map((e) => [e.action, e.objectId, e.actor]), [
    ["network.create", n.id, "ipv4:127.0.0.1:5000"],
    ["nic.create", a.id, "ipv4:127.0.0.1:5001"],
    ["nic.update", a.id, "cli"],
    ["nic.delete", a.id, "cli"],
    ["network.delete", n.id, "cli"],
  ]);
  assertEquals(
    (all[2].detail.after as { routed_ipv4_prefixes: string[] }).routed_ipv4_prefixes,
    ["192.168.0.0/24"],
  );
  assertEquals(t.store.audit({ objectId: a.id }).length, 3);
  assertEquals(t.store.audit({ action: "nic.delete" }).length, 1);
  assertEquals(t.store.audit({ afterSeq: all[3].seq }).length, 1);
  assert(all.every((e) => !Number.isNaN(Date.parse(e.at))));
});

Deno.test("store: a refused change leaves nothing, not even an audit line", async () => {
  await using t = await tempStore();
  t.store.createNetwork(net("a", "10.0.0.0/30"), "test");
  t.store.createNic(nic("a"), "test", cryptoRandom);
  t.store.createNic(nic("a"), "test", cryptoRandom);
  const audit = t.store.audit().length;
  const e = assertThrows(() => t.store.createNic(nic("a"), "test", cryptoRandom), ApiError);
  assertEquals((e as ApiError).code, Status.RESOURCE_EXHAUSTED);
  assertEquals(t.store.audit().length, audit);
  assertThrows(() => t.store.createNetwork(net("a", "10.1.0.0/24"), "test"), ApiError, "exists");
  assertEquals(t.store.listNetworks().length, 1);
  assertEquals(t.store.audit().length, audit);
});

Deno.test("store: pending vNICs are invisible and purged at the next start", async () => {
  await using t = await tempStore();
  t.store.createNetwork(net("a"), "test");
  const p = t.store.createNic(nic("a", { name: "p" }), "test", cryptoRandom);
  assertEquals(t.store.listNics(""), []);
  assertThrows(() => t.store.getNic(p.id), ApiError, "not found");
  assertEquals(t.store.desiredState((id) => id, 1500).nics.map((n) => n.id), [p.id]);
  assertEquals(t.store.purgePending("api"), [p.id]);
  assertEquals(t.store.desiredState((id) => id, 1500).nics, []);
  assertEquals(
    t.store.createNic(nic("a", { name: "p" }), "test", cryptoRandom).ipv4_address,
    p.ipv4_address,
  );
});

Deno.test("store: SIGKILL mid-batch loses no commit and leaves no half change", async () => {
  await using t = await tempStore();
  t.store.close();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--config=${ROOT}deno.json`,
      "--allow-read",
      "--allow-write",
      "--allow-env",
      WRITER,
      t.path,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let acked = 0;
  const reader = child.stdout.getReader();
  const dec = new TextDecoder();
  let buf = "";
  while (acked < 150) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    const lines = buf.split("\n");
    buf = lines.pop()!;
    if (lines.length) acked = Number(lines.at(-1));
  }
  child.kill("SIGKILL");
  reader.releaseLock();
  await child.stdout.cancel();
  assertEquals((await child.status).signal, "SIGKILL");

  const db = new DatabaseSync(t.path);
  assertEquals({ ...db.prepare("PRAGMA integrity_check").get() }, { integrity_check: "ok" });
  assertEquals(db.prepare("PRAGMA foreign_key_check").all(), []);
  const count = (sql: string) => (db.prepare(sql).get() as { c: number }).c;
  const nics = count("SELECT COUNT(*) AS c FROM nics");
  assert(nics >= acked, `${acked} commits acknowledged, ${nics} stored`);
  // Every vNIC is whole: its two addresses, its routed prefix, its audit line.
  assertEquals(count("SELECT COUNT(*) AS c FROM addresses"), 2 * nics);
  assertEquals(count("SELECT COUNT(*) AS c FROM routed_prefixes"), nics);
  assertEquals(count("SELECT COUNT(*) AS c FROM audit_log WHERE action = 'nic.create'"), nics);
  assertEquals(count("SELECT COUNT(DISTINCT address) AS c FROM addresses"), 2 * nics);
  const pending = count("SELECT COUNT(*) AS c FROM nics WHERE pending = 1");
  assert(pending <= 1, "at most the vNIC in flight is pending");
  db.close();
  const store = Store.open(t.path);
  store.purgePending("api");
  assertEquals(store.listNics("").length, nics - pending);
  store.close();
});
