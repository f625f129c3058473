/**
 * The api's desired state in SQLite (`node:sqlite`): networks, vNICs, their addresses and
 * routed prefixes, and an audit log of every change.
 *
 * Durability: WAL with `synchronous=FULL`, so a commit survives a crash of the process or the
 * machine; every mutation runs in one `BEGIN IMMEDIATE` transaction, so a crash leaves either
 * the whole change or none of it. The UNIQUE constraints (names, MACs, one address per network
 * and family) are the last line against duplicates, also if two processes ever shared the file.
 *
 * A vNIC is stored *pending* until the dataplane has its socket listening; a pending vNIC left
 * by a crash is removed at the next start ({@link Store.purgePending}), so "CreateNic failed
 * half-way" never survives.
 *
 * @example
 * ```ts
 * const store = Store.open("/var/lib/mvirt-net/mvirt-net.db");
 * const net = store.createNetwork(spec, "cli");
 * ```
 * @module
 */

import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import type { DesiredNetwork, DesiredNic } from "../daemon/protocol.ts";
import { ApiError, invalid, notFound, Status } from "./errors.ts";
import { lowestFreeIpv4, type RandomBytes, randomFreeIpv6, randomMac } from "./allocate.ts";
import type { Network, Nic } from "./proto_types.ts";
import {
  type Cidr,
  type Family,
  formatIp,
  isUuid,
  type NetworkSpec,
  type NicSpec,
  overlaps,
  parseCidr,
  parseHostAddress,
  parseIp,
  parseRoutedPrefixes,
  parseUuid,
} from "./validate.ts";

/** A vNIC as stored: everything of the API's Nic except what the dataplane reports. */
export type NicRecord = Omit<Nic, "state" | "socket_path">;

/** One line of the audit log. */
export interface AuditEntry {
  seq: number;
  /** ISO 8601 time of the change. */
  at: string;
  /** Who asked: the gRPC peer, or "api" for the api's own housekeeping. */
  actor: string;
  /** What was done, e.g. `nic.create`. */
  action: string;
  objectKind: "network" | "nic";
  objectId: string;
  detail: Record<string, unknown>;
}

/** Filter of {@link Store.audit}. */
export interface AuditQuery {
  objectId?: string;
  action?: string;
  /** Only entries with a sequence number above this. */
  afterSeq?: number;
  limit?: number;
}

/** Each migration takes the schema from version i to i+1. Never edit one that shipped. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE networks (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    ipv4_subnet TEXT,
    ipv6_prefix TEXT,
    dns_servers TEXT NOT NULL DEFAULT '[]',
    ntp_servers TEXT NOT NULL DEFAULT '[]',
    is_public   INTEGER NOT NULL CHECK (is_public IN (0, 1)),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    CHECK (ipv4_subnet IS NOT NULL OR ipv6_prefix IS NOT NULL)
  ) STRICT;
  CREATE TABLE nics (
    id          TEXT PRIMARY KEY,
    name        TEXT UNIQUE,
    network_id  TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    mac         TEXT NOT NULL UNIQUE,
    pending     INTEGER NOT NULL CHECK (pending IN (0, 1)),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
  ) STRICT;
  CREATE INDEX nics_by_network ON nics(network_id);
  CREATE TABLE addresses (
    network_id  TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    family      INTEGER NOT NULL CHECK (family IN (4, 6)),
    address     TEXT NOT NULL,
    nic_id      TEXT NOT NULL REFERENCES nics(id) ON DELETE CASCADE,
    UNIQUE (network_id, family, address),
    UNIQUE (nic_id, family)
  ) STRICT;
  CREATE TABLE routed_prefixes (
    nic_id      TEXT NOT NULL REFERENCES nics(id) ON DELETE CASCADE,
    network_id  TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    family      INTEGER NOT NULL CHECK (family IN (4, 6)),
    prefix      TEXT NOT NULL,
    position    INTEGER NOT NULL,
    PRIMARY KEY (nic_id, family, position),
    UNIQUE (network_id, prefix)
  ) STRICT;
  CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_kind TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    detail      TEXT NOT NULL
  ) STRICT;
  CREATE INDEX audit_by_object ON audit_log(object_id);
  `,
];

/** The schema version this code writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Time a writer waits for another connection's lock before SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;
/** How often a MAC collision is retried (five random bytes: practically never). */
const MAC_ATTEMPTS = 8;
// node:sqlite error codes (extended result codes).
const SQLITE_CONSTRAINT_UNIQUE = 2067;
const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;

interface NetworkRow {
  id: string;
  name: string;
  ipv4_subnet: string | null;
  ipv6_prefix: string | null;
  dns_servers: string;
  ntp_servers: string;
  is_public: number;
  created_at: string;
  updated_at: string;
  nic_count: number;
}

interface NicRow {
  id: string;
  name: string | null;
  network_id: string;
  mac: string;
  pending: number;
  created_at: string;
  updated_at: string;
}

function now(): string {
  return new Date().toISOString();
}

function toNetwork(r: NetworkRow): Network {
  return {
    id: r.id,
    name: r.name,
    ipv4_enabled: r.ipv4_subnet !== null,
    ipv4_subnet: r.ipv4_subnet ?? "",
    ipv6_enabled: r.ipv6_prefix !== null,
    ipv6_prefix: r.ipv6_prefix ?? "",
    dns_servers: JSON.parse(r.dns_servers),
    ntp_servers: JSON.parse(r.ntp_servers),
    nic_count: r.nic_count,
    created_at: r.created_at,
    updated_at: r.updated_at,
    is_public: r.is_public === 1,
  };
}

function subnetOf(net: Network, family: Family): Cidr | null {
  const text = family === 4 ? net.ipv4_subnet : net.ipv6_prefix;
  return text === "" ? null : parseCidr("subnet", text, family);
}

const NETWORK_SELECT = `
  SELECT n.*, (SELECT COUNT(*) FROM nics WHERE network_id = n.id AND pending = 0) AS nic_count
  FROM networks n`;

/** The SQLite store. All methods are synchronous and each mutation is one transaction. */
export class Store {
  #db: DatabaseSync;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Opens (creating if needed) the store at `path` and applies pending migrations. */
  static open(path: string): Store {
    const db = new DatabaseSync(path);
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA foreign_keys = ON");
    const store = new Store(db);
    store.#migrate();
    return store;
  }

  /** Closes the database. */
  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  /** The schema version of the file. */
  schemaVersion(): number {
    const row = this.#db.prepare("SELECT version FROM schema_version").get() as
      | { version: number }
      | undefined;
    return row?.version ?? 0;
  }

  #migrate(): void {
    this.#db.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT");
    this.#tx(() => {
      if (!this.#db.prepare("SELECT 1 FROM schema_version").get()) {
        this.#db.exec("INSERT INTO schema_version (version) VALUES (0)");
      }
    });
    const found = this.schemaVersion();
    if (found > SCHEMA_VERSION) {
      throw new Error(
        `store has schema version ${found}, newer than this mvirt-net (${SCHEMA_VERSION}); ` +
          "run the newer version or restore a backup",
      );
    }
    for (let v = found; v < SCHEMA_VERSION; v++) {
      this.#tx(() => {
        this.#db.exec(MIGRATIONS[v]);
        this.#db.prepare("UPDATE schema_version SET version = ?").run(v + 1);
      });
    }
  }

  /** Runs `fn` in one BEGIN IMMEDIATE transaction; rolls back if it throws. */
  #tx<T>(fn: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const r = fn();
      this.#db.exec("COMMIT");
      return r;
    } catch (e) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  #audit(
    actor: string,
    action: string,
    kind: AuditEntry["objectKind"],
    id: string,
    detail: Record<string, unknown>,
  ): void {
    this.#db.prepare(
      "INSERT INTO audit_log (at, actor, action, object_kind, object_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
    ).run(now(), actor, action, kind, id, JSON.stringify(detail));
  }

  /** Audit log entries, oldest first. */
  audit(q: AuditQuery = {}): AuditEntry[] {
    const where: string[] = ["seq > ?"];
    const args: SQLInputValue[] = [q.afterSeq ?? 0];
    if (q.objectId) {
      where.push("object_id = ?");
      args.push(q.objectId);
    }
    if (q.action) {
      where.push("action = ?");
      args.push(q.action);
    }
    args.push(q.limit ?? -1);
    const rows = this.#db.prepare(
      `SELECT * FROM audit_log WHERE ${where.join(" AND ")} ORDER BY seq LIMIT ?`,
    ).all(...args) as Array<Record<string, string | number>>;
    return rows.map((r) => ({
      seq: r.seq as number,
      at: r.at as string,
      actor: r.actor as string,
      action: r.action as string,
      objectKind: r.object_kind as AuditEntry["objectKind"],
      objectId: r.object_id as string,
      detail: JSON.parse(r.detail as string),
    }));
  }

  // ---- networks ----

  #networkRow(where: string, arg: string): Network | null {
    const r = this.#db.prepare(`${NETWORK_SELECT} WHERE ${where}`).get(arg) as
      | NetworkRow
      | undefined;
    return r ? toNetwork(r) : null;
  }

  /** A network by id or name; NOT_FOUND otherwise. */
  resolveNetwork(ref: string, field = "network_id"): Network {
    if (ref === "") throw invalid(field, ref, "must name a network (UUID or name)");
    const net = isUuid(ref)
      ? this.#networkRow("n.id = ?", ref.toLowerCase())
      : this.#networkRow("n.name = ?", ref);
    if (!net) throw notFound("network", ref);
    return net;
  }

  /** A network by id; NOT_FOUND otherwise. */
  getNetwork(id: string): Network {
    const net = this.#networkRow("n.id = ?", parseUuid("id", id));
    if (!net) throw notFound("network", id);
    return net;
  }

  /** A network by name; NOT_FOUND otherwise. */
  getNetworkByName(name: string): Network {
    const net = this.#networkRow("n.name = ?", name);
    if (!net) throw notFound("network", name);
    return net;
  }

  /** Every network, by name. */
  listNetworks(): Network[] {
    return (this.#db.prepare(`${NETWORK_SELECT} ORDER BY n.name`).all() as unknown as NetworkRow[])
      .map(toNetwork);
  }

  /** Stores a validated network; ALREADY_EXISTS or FAILED_PRECONDITION on conflicts. */
  createNetwork(spec: NetworkSpec, actor: string): Network {
    return this.#tx(() => {
      const id = spec.id ?? crypto.randomUUID();
      if (this.#networkRow("n.id = ?", id)) {
        throw new ApiError(Status.ALREADY_EXISTS, `id: network ${JSON.stringify(id)} exists`);
      }
      if (this.#networkRow("n.name = ?", spec.name)) {
        throw new ApiError(
          Status.ALREADY_EXISTS,
          `name: a network named ${JSON.stringify(spec.name)} exists`,
        );
      }
      if (spec.isPublic) this.#checkPublicOverlap(spec);
      const t = now();
      this.#db.prepare(
        `INSERT INTO networks (id, name, ipv4_subnet, ipv6_prefix, dns_servers, ntp_servers,
           is_public, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        id,
        spec.name,
        spec.ipv4?.text ?? null,
        spec.ipv6?.text ?? null,
        JSON.stringify(spec.dnsServers),
        JSON.stringify(spec.ntpServers),
        spec.isPublic ? 1 : 0,
        t,
        t,
      );
      const net = this.#networkRow("n.id = ?", id)!;
      this.#audit(actor, "network.create", "network", id, { network: net });
      return net;
    });
  }

  /** Public networks share the host's routing table, so their subnets must be disjoint. */
  #checkPublicOverlap(spec: NetworkSpec): void {
    for (const other of this.listNetworks().filter((n) => n.is_public)) {
      for (
        const [mine, field, family] of [
          [spec.ipv4, "ipv4_subnet", 4],
          [spec.ipv6, "ipv6_prefix", 6],
        ] as const
      ) {
        const theirs = subnetOf(other, family);
        if (mine && theirs && overlaps(mine, theirs)) {
          throw new ApiError(
            Status.FAILED_PRECONDITION,
            `${field}: ${mine.text} overlaps ${theirs.text} of public network ` +
              `${JSON.stringify(other.name)}; public subnets must not overlap`,
          );
        }
      }
    }
  }

  /** Replaces a network's DNS and NTP servers (already validated). */
  updateNetwork(id: string, dns: string[], ntp: string[], actor: string): Network {
    return this.#tx(() => {
      const before = this.getNetwork(id);
      this.#db.prepare(
        "UPDATE networks SET dns_servers = ?, ntp_servers = ?, updated_at = ? WHERE id = ?",
      ).run(JSON.stringify(dns), JSON.stringify(ntp), now(), before.id);
      const after = this.getNetwork(before.id);
      this.#audit(actor, "network.update", "network", before.id, {
        before: { dns_servers: before.dns_servers, ntp_servers: before.ntp_servers },
        after: { dns_servers: dns, ntp_servers: ntp },
      });
      return after;
    });
  }

  /**
   * Deletes a network. With vNICs and without `force`: FAILED_PRECONDITION. With `force` its
   * vNICs go in the same transaction. Returns the ids of the vNICs removed.
   */
  deleteNetwork(id: string, force: boolean, actor: string): { network: Network; nicIds: string[] } {
    return this.#tx(() => {
      const net = this.getNetwork(id);
      const nicIds = (this.#db.prepare("SELECT id FROM nics WHERE network_id = ? ORDER BY id")
        .all(net.id) as Array<{ id: string }>).map((r) => r.id);
      if (nicIds.length > 0 && !force) {
        throw new ApiError(
          Status.FAILED_PRECONDITION,
          `id: network ${JSON.stringify(net.name)} still has ${nicIds.length} vNIC(s); ` +
            "delete them first or pass force",
        );
      }
      for (const nicId of nicIds) {
        this.#audit(actor, "nic.delete", "nic", nicId, { reason: "network deleted with force" });
      }
      this.#db.prepare("DELETE FROM networks WHERE id = ?").run(net.id);
      this.#audit(actor, "network.delete", "network", net.id, { force, nicsDeleted: nicIds });
      return { network: net, nicIds };
    });
  }

  // ---- vNICs ----

  #nicRecord(row: NicRow): NicRecord {
    const addrs = this.#db.prepare("SELECT family, address FROM addresses WHERE nic_id = ?")
      .all(row.id) as Array<{ family: number; address: string }>;
    const prefixes = this.#db.prepare(
      "SELECT family, prefix FROM routed_prefixes WHERE nic_id = ? ORDER BY family, position",
    ).all(row.id) as Array<{ family: number; prefix: string }>;
    return {
      id: row.id,
      name: row.name ?? "",
      network_id: row.network_id,
      mac_address: row.mac,
      ipv4_address: addrs.find((a) => a.family === 4)?.address ?? "",
      ipv6_address: addrs.find((a) => a.family === 6)?.address ?? "",
      routed_ipv4_prefixes: prefixes.filter((p) => p.family === 4).map((p) => p.prefix),
      routed_ipv6_prefixes: prefixes.filter((p) => p.family === 6).map((p) => p.prefix),
      created_at: row.created_at,
      updated_at: row.updated_at,
    };
  }

  #nicRow(where: string, arg: string, includePending = false): NicRow | null {
    const r = this.#db.prepare(
      `SELECT * FROM nics WHERE ${where}${includePending ? "" : " AND pending = 0"}`,
    ).get(arg) as NicRow | undefined;
    return r ?? null;
  }

  /** A vNIC by id (pending ones are invisible); NOT_FOUND otherwise. */
  getNic(id: string): NicRecord {
    const row = this.#nicRow("id = ?", parseUuid("id", id));
    if (!row) throw notFound("vNIC", id);
    return this.#nicRecord(row);
  }

  /** A vNIC by name; NOT_FOUND otherwise. */
  getNicByName(name: string): NicRecord {
    const row = this.#nicRow("name = ?", name);
    if (!row) throw notFound("vNIC", name);
    return this.#nicRecord(row);
  }

  /** vNICs of one network (by id or name), or of all networks when `networkRef` is "". */
  listNics(networkRef: string): NicRecord[] {
    const rows = networkRef === ""
      ? this.#db.prepare("SELECT * FROM nics WHERE pending = 0 ORDER BY created_at, id").all()
      : this.#db.prepare(
        "SELECT * FROM nics WHERE pending = 0 AND network_id = ? ORDER BY created_at, id",
      ).all(this.resolveNetwork(networkRef).id);
    return (rows as unknown as NicRow[]).map((r) => this.#nicRecord(r));
  }

  #addressTaken(networkId: string, family: Family, address: string): boolean {
    return this.#db.prepare(
      "SELECT 1 FROM addresses WHERE network_id = ? AND family = ? AND address = ?",
    ).get(networkId, family, address) !== undefined;
  }

  #allocate(net: Network, family: Family, requested: string, field: string, random: RandomBytes) {
    const subnet = subnetOf(net, family);
    if (!subnet) {
      if (requested !== "") {
        throw new ApiError(
          Status.FAILED_PRECONDITION,
          `${field}: ${JSON.stringify(requested)} given but network ${
            JSON.stringify(net.name)
          } has no IPv${family}`,
        );
      }
      return null;
    }
    if (requested !== "") {
      const text = formatIp(family, parseHostAddress(field, requested, subnet));
      if (this.#addressTaken(net.id, family, text)) {
        throw new ApiError(
          Status.ALREADY_EXISTS,
          `${field}: ${text} is already taken in network ${JSON.stringify(net.name)}`,
        );
      }
      return text;
    }
    if (family === 4) {
      const used = new Set(
        (this.#db.prepare("SELECT address FROM addresses WHERE network_id = ? AND family = 4")
          .all(net.id) as Array<{ address: string }>).map((r) => parseIp(r.address)!.value),
      );
      const a = lowestFreeIpv4(subnet, used);
      if (a === null) {
        throw new ApiError(
          Status.RESOURCE_EXHAUSTED,
          `ipv4_address: subnet ${subnet.text} of network ${JSON.stringify(net.name)} is full`,
        );
      }
      return formatIp(4, a);
    }
    const a = randomFreeIpv6(
      subnet,
      (v) => this.#addressTaken(net.id, 6, formatIp(6, v)),
      random,
    );
    if (a === null) {
      throw new ApiError(
        Status.RESOURCE_EXHAUSTED,
        `ipv6_address: no free address found in ${subnet.text} of network ${
          JSON.stringify(net.name)
        }`,
      );
    }
    return formatIp(6, a);
  }

  #checkRoutedConflicts(networkId: string, nicId: string, prefixes: Cidr[], field: string): void {
    const others = this.#db.prepare(
      "SELECT prefix, family, nic_id FROM routed_prefixes WHERE network_id = ? AND nic_id != ?",
    ).all(networkId, nicId) as Array<{ prefix: string; family: Family; nic_id: string }>;
    for (const p of prefixes) {
      for (const o of others) {
        if (o.family === p.family && overlaps(parseCidr("prefix", o.prefix, o.family), p)) {
          throw new ApiError(
            Status.ALREADY_EXISTS,
            `${field}: ${p.text} overlaps ${o.prefix} routed to vNIC ${o.nic_id}`,
          );
        }
      }
    }
  }

  #writePrefixes(nicId: string, networkId: string, family: Family, prefixes: Cidr[]): void {
    this.#db.prepare("DELETE FROM routed_prefixes WHERE nic_id = ? AND family = ?").run(
      nicId,
      family,
    );
    const ins = this.#db.prepare(
      "INSERT INTO routed_prefixes (nic_id, network_id, family, prefix, position) VALUES (?, ?, ?, ?, ?)",
    );
    prefixes.forEach((p, i) => ins.run(nicId, networkId, family, p.text, i));
  }

  /**
   * Validates against the network, allocates addresses and a MAC, and stores the vNIC as
   * *pending* (invisible to Get/List) in one transaction. {@link confirmNic} makes it visible;
   * {@link abandonNic} removes it.
   */
  createNic(spec: NicSpec, actor: string, random: RandomBytes): NicRecord {
    return this.#tx(() => {
      const net = this.resolveNetwork(spec.networkRef);
      const id = spec.id ?? crypto.randomUUID();
      if (this.#nicRow("id = ?", id, true)) {
        throw new ApiError(Status.ALREADY_EXISTS, `id: vNIC ${JSON.stringify(id)} exists`);
      }
      if (spec.name !== "" && this.#nicRow("name = ?", spec.name, true)) {
        throw new ApiError(
          Status.ALREADY_EXISTS,
          `name: a vNIC named ${JSON.stringify(spec.name)} exists`,
        );
      }
      const v4 = parseRoutedPrefixes("routed_ipv4_prefixes", spec.routedIpv4, 4, subnetOf(net, 4));
      const v6 = parseRoutedPrefixes("routed_ipv6_prefixes", spec.routedIpv6, 6, subnetOf(net, 6));
      this.#checkRoutedConflicts(net.id, id, v4, "routed_ipv4_prefixes");
      this.#checkRoutedConflicts(net.id, id, v6, "routed_ipv6_prefixes");
      const ipv4 = this.#allocate(net, 4, spec.ipv4, "ipv4_address", random);
      const ipv6 = this.#allocate(net, 6, spec.ipv6, "ipv6_address", random);
      const t = now();
      const insert = (mac: string) =>
        this.#db.prepare(
          `INSERT INTO nics (id, name, network_id, mac, pending, created_at, updated_at)
           VALUES (?, ?, ?, ?, 1, ?, ?)`,
        ).run(id, spec.name === "" ? null : spec.name, net.id, mac, t, t);
      if (spec.mac !== "") {
        if (this.#db.prepare("SELECT 1 FROM nics WHERE mac = ?").get(spec.mac)) {
          throw new ApiError(
            Status.ALREADY_EXISTS,
            `mac_address: ${spec.mac} is already used by another vNIC`,
          );
        }
        insert(spec.mac);
      } else {
        this.#insertWithRandomMac(insert, random);
      }
      const addr = this.#db.prepare(
        "INSERT INTO addresses (network_id, family, address, nic_id) VALUES (?, ?, ?, ?)",
      );
      if (ipv4) addr.run(net.id, 4, ipv4, id);
      if (ipv6) addr.run(net.id, 6, ipv6, id);
      this.#writePrefixes(id, net.id, 4, v4);
      this.#writePrefixes(id, net.id, 6, v6);
      const rec = this.#nicRecord(this.#nicRow("id = ?", id, true)!);
      this.#audit(actor, "nic.create", "nic", id, { nic: rec });
      return rec;
    });
  }

  #insertWithRandomMac(insert: (mac: string) => void, random: RandomBytes): void {
    for (let i = 0; i < MAC_ATTEMPTS; i++) {
      const mac = randomMac(random);
      if (this.#db.prepare("SELECT 1 FROM nics WHERE mac = ?").get(mac)) continue;
      insert(mac);
      return;
    }
    throw new ApiError(Status.RESOURCE_EXHAUSTED, "mac_address: no free MAC found; retry");
  }

  /** Marks a pending vNIC as created (its socket is listening). */
  confirmNic(id: string): NicRecord {
    return this.#tx(() => {
      this.#db.prepare("UPDATE nics SET pending = 0 WHERE id = ?").run(id);
      return this.getNic(id);
    });
  }

  /** Removes a pending vNIC whose creation failed. */
  abandonNic(id: string, actor: string, reason: string): void {
    this.#tx(() => {
      const r = this.#db.prepare("DELETE FROM nics WHERE id = ? AND pending = 1").run(id);
      if (r.changes > 0) this.#audit(actor, "nic.create.abandoned", "nic", id, { reason });
    });
  }

  /** Removes every pending vNIC (creations a crash interrupted). Returns their ids. */
  purgePending(actor: string): string[] {
    return this.#tx(() => {
      const ids = (this.#db.prepare("SELECT id FROM nics WHERE pending = 1").all() as Array<
        { id: string }
      >).map((r) => r.id);
      for (const id of ids) {
        this.#db.prepare("DELETE FROM nics WHERE id = ?").run(id);
        this.#audit(actor, "nic.create.abandoned", "nic", id, {
          reason: "creation interrupted by a restart",
        });
      }
      return ids;
    });
  }

  /** Replaces the routed prefixes of a vNIC. */
  updateNic(id: string, routedIpv4: string[], routedIpv6: string[], actor: string): NicRecord {
    return this.#tx(() => {
      const before = this.getNic(id);
      const net = this.getNetwork(before.network_id);
      const v4 = parseRoutedPrefixes("routed_ipv4_prefixes", routedIpv4, 4, subnetOf(net, 4));
      const v6 = parseRoutedPrefixes("routed_ipv6_prefixes", routedIpv6, 6, subnetOf(net, 6));
      this.#checkRoutedConflicts(net.id, before.id, v4, "routed_ipv4_prefixes");
      this.#checkRoutedConflicts(net.id, before.id, v6, "routed_ipv6_prefixes");
      this.#writePrefixes(before.id, net.id, 4, v4);
      this.#writePrefixes(before.id, net.id, 6, v6);
      this.#db.prepare("UPDATE nics SET updated_at = ? WHERE id = ?").run(now(), before.id);
      const after = this.getNic(before.id);
      this.#audit(actor, "nic.update", "nic", before.id, {
        before: {
          routed_ipv4_prefixes: before.routed_ipv4_prefixes,
          routed_ipv6_prefixes: before.routed_ipv6_prefixes,
        },
        after: {
          routed_ipv4_prefixes: after.routed_ipv4_prefixes,
          routed_ipv6_prefixes: after.routed_ipv6_prefixes,
        },
      });
      return after;
    });
  }

  /** Deletes a vNIC and its addresses; NOT_FOUND when absent. */
  deleteNic(id: string, actor: string): NicRecord {
    return this.#tx(() => {
      const nic = this.getNic(id);
      this.#db.prepare("DELETE FROM nics WHERE id = ?").run(nic.id);
      this.#audit(actor, "nic.delete", "nic", nic.id, { nic });
      return nic;
    });
  }

  // ---- dataplane view ----

  /** A network as the dataplane needs it. */
  desiredNetwork(net: Network, mtu: number): DesiredNetwork {
    return {
      id: net.id,
      name: net.name,
      ipv4Subnet: net.ipv4_subnet,
      ipv6Prefix: net.ipv6_prefix,
      dnsServers: net.dns_servers,
      ntpServers: net.ntp_servers,
      isPublic: net.is_public,
      mtu,
    };
  }

  /** The whole desired state, pending vNICs included (their creation is in progress). */
  desiredState(
    socketPath: (nicId: string) => string,
    mtu: number,
  ): { networks: DesiredNetwork[]; nics: DesiredNic[] } {
    const rows = this.#db.prepare("SELECT * FROM nics ORDER BY created_at, id")
      .all() as unknown as NicRow[];
    return {
      networks: this.listNetworks().map((n) => this.desiredNetwork(n, mtu)),
      nics: rows.map((r) => desiredNic(this.#nicRecord(r), socketPath(r.id))),
    };
  }
}

/** A vNIC as the dataplane needs it. */
export function desiredNic(nic: NicRecord, socketPath: string): DesiredNic {
  return {
    id: nic.id,
    name: nic.name,
    networkId: nic.network_id,
    mac: nic.mac_address,
    ipv4: nic.ipv4_address,
    ipv6: nic.ipv6_address,
    routedIpv4Prefixes: nic.routed_ipv4_prefixes,
    routedIpv6Prefixes: nic.routed_ipv6_prefixes,
    socketPath,
    securityGroupIds: [],
    rules: [],
  };
}

/** True when `e` is SQLite's UNIQUE or PRIMARY KEY violation (a race the checks missed). */
export function isUniqueViolation(e: unknown): boolean {
  const code = (e as { errcode?: number }).errcode;
  return code === SQLITE_CONSTRAINT_UNIQUE || code === SQLITE_CONSTRAINT_PRIMARYKEY;
}
