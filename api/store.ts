/**
 * The api's desired state in SQLite (`node:sqlite`): networks, vNICs, their addresses and
 * routed prefixes, security groups with their rules and their attachments to vNICs, and an
 * audit log of every change.
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
 * Security groups: a rule belongs to one group and goes with it; an attachment links a vNIC
 * and a group and goes with either (so also with the vNIC's network). The dataplane sees a
 * vNIC with the ids of its groups and the union of their rules ({@link Store.desiredNic}).
 *
 * @example
 * ```ts
 * const store = Store.open("/var/lib/mvirt-net/mvirt-net.db");
 * const net = store.createNetwork(spec, "cli");
 * ```
 * @module
 */

import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import type { DesiredNetwork, DesiredNic, DesiredRule } from "../daemon/protocol.ts";
import { ApiError, invalid, notFound, Status } from "./errors.ts";
import { lowestFreeIpv4, type RandomBytes, randomFreeIpv6, randomMac } from "./allocate.ts";
import type { Network, Nic, SecurityGroup, SecurityGroupRule } from "./proto_types.ts";
import {
  type Cidr,
  DIRECTION_API_NAMES,
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
  PROTOCOL_API_NAMES,
  type RuleSpec,
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
  /** Rule changes and attachments are entries of their security group. */
  objectKind: "network" | "nic" | "security_group";
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
  `
  CREATE TABLE security_groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
  ) STRICT;
  CREATE TABLE security_group_rules (
    id                TEXT PRIMARY KEY,
    security_group_id TEXT NOT NULL REFERENCES security_groups(id) ON DELETE CASCADE,
    direction         TEXT NOT NULL CHECK (direction IN ('INGRESS', 'EGRESS')),
    protocol          TEXT NOT NULL CHECK (protocol IN ('ALL', 'TCP', 'UDP', 'ICMP', 'ICMPV6')),
    port_start        INTEGER NOT NULL CHECK (port_start BETWEEN 0 AND 65535),
    port_end          INTEGER NOT NULL CHECK (port_end BETWEEN port_start AND 65535),
    cidr              TEXT NOT NULL,
    description       TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    CHECK (protocol IN ('TCP', 'UDP') OR (port_start = 0 AND port_end = 0)),
    UNIQUE (security_group_id, direction, protocol, port_start, port_end, cidr)
  ) STRICT;
  CREATE TABLE nic_security_groups (
    nic_id            TEXT NOT NULL REFERENCES nics(id) ON DELETE CASCADE,
    security_group_id TEXT NOT NULL REFERENCES security_groups(id) ON DELETE CASCADE,
    attached_at       TEXT NOT NULL,
    PRIMARY KEY (nic_id, security_group_id)
  ) STRICT;
  CREATE INDEX nic_security_groups_by_group ON nic_security_groups(security_group_id);
  `,
];

/** The schema version this code writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Time a writer waits for another connection's lock before SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;
/**
 * Most rules in one security group, and most groups on one vNIC: the dataplane checks a
 * vNIC's rules in turn for every new flow, so the union must stay small.
 */
export const MAX_RULES_PER_GROUP = 256;
/** See {@link MAX_RULES_PER_GROUP}. */
export const MAX_GROUPS_PER_NIC = 16;
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

interface GroupRow {
  id: string;
  name: string;
  description: string;
  created_at: string;
  updated_at: string;
  nic_count: number;
}

interface RuleRow {
  id: string;
  security_group_id: string;
  direction: DesiredRule["direction"];
  protocol: DesiredRule["protocol"];
  port_start: number;
  port_end: number;
  cidr: string;
  description: string;
  created_at: string;
  updated_at: string;
}

function toRule(r: RuleRow): SecurityGroupRule {
  return {
    id: r.id,
    security_group_id: r.security_group_id,
    direction: DIRECTION_API_NAMES[r.direction],
    protocol: PROTOCOL_API_NAMES[r.protocol],
    port_start: r.port_start,
    port_end: r.port_end,
    cidr: r.cidr,
    description: r.description,
    created_at: r.created_at,
    updated_at: r.updated_at,
  };
}

function toDesiredRule(r: RuleRow): DesiredRule {
  return {
    id: r.id,
    securityGroupId: r.security_group_id,
    direction: r.direction,
    protocol: r.protocol,
    portStart: r.port_start,
    portEnd: r.port_end,
    cidr: r.cidr,
  };
}

/** Rules in the order they were added (rowid breaks ties within one millisecond). */
const RULE_ORDER = "created_at, rowid";

const GROUP_SELECT = `
  SELECT g.*, (SELECT COUNT(*) FROM nic_security_groups a JOIN nics n ON n.id = a.nic_id
               WHERE a.security_group_id = g.id AND n.pending = 0) AS nic_count
  FROM security_groups g`;

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
        this.#audit(actor, "nic.delete", "nic", nicId, {
          reason: "network deleted with force",
          security_groups_detached: this.#groupIdsOf(nicId),
        });
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
      const groups = this.#groupIdsOf(nic.id);
      this.#db.prepare("DELETE FROM nics WHERE id = ?").run(nic.id);
      this.#audit(actor, "nic.delete", "nic", nic.id, { nic, security_groups_detached: groups });
      return nic;
    });
  }

  /** A visible vNIC by id or name; NOT_FOUND otherwise. */
  resolveNic(ref: string, field = "nic_id"): NicRecord {
    if (ref === "") throw invalid(field, ref, "must name a vNIC (UUID or name)");
    return isUuid(ref) ? this.getNic(ref) : this.getNicByName(ref);
  }

  // ---- security groups ----

  #groupRow(where: string, arg: string): SecurityGroup | null {
    const r = this.#db.prepare(`${GROUP_SELECT} WHERE ${where}`).get(arg) as GroupRow | undefined;
    if (!r) return null;
    const rules = this.#db.prepare(
      `SELECT * FROM security_group_rules WHERE security_group_id = ? ORDER BY ${RULE_ORDER}`,
    ).all(r.id) as unknown as RuleRow[];
    return {
      id: r.id,
      name: r.name,
      description: r.description,
      rules: rules.map(toRule),
      nic_count: r.nic_count,
      created_at: r.created_at,
      updated_at: r.updated_at,
    };
  }

  /** A security group by id; NOT_FOUND otherwise. */
  getSecurityGroup(id: string): SecurityGroup {
    const g = this.#groupRow("g.id = ?", parseUuid("id", id));
    if (!g) throw notFound("security group", id);
    return g;
  }

  /** A security group by name; NOT_FOUND otherwise. */
  getSecurityGroupByName(name: string): SecurityGroup {
    const g = this.#groupRow("g.name = ?", name);
    if (!g) throw notFound("security group", name);
    return g;
  }

  /** A security group by id or name; NOT_FOUND otherwise. */
  resolveSecurityGroup(ref: string, field = "security_group_id"): SecurityGroup {
    if (ref === "") throw invalid(field, ref, "must name a security group (UUID or name)");
    return isUuid(ref) ? this.getSecurityGroup(ref) : this.getSecurityGroupByName(ref);
  }

  /** Every security group, by name. */
  listSecurityGroups(): SecurityGroup[] {
    const ids = this.#db.prepare("SELECT id FROM security_groups ORDER BY name").all() as Array<
      { id: string }
    >;
    return ids.map((r) => this.#groupRow("g.id = ?", r.id)!);
  }

  /** Stores a security group (name already validated); ALREADY_EXISTS for a taken name. */
  createSecurityGroup(name: string, description: string, actor: string): SecurityGroup {
    return this.#tx(() => {
      if (this.#groupRow("g.name = ?", name)) {
        throw new ApiError(
          Status.ALREADY_EXISTS,
          `name: a security group named ${JSON.stringify(name)} exists`,
        );
      }
      const id = crypto.randomUUID();
      const t = now();
      this.#db.prepare(
        "INSERT INTO security_groups (id, name, description, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
      ).run(id, name, description, t, t);
      const group = this.#groupRow("g.id = ?", id)!;
      this.#audit(actor, "security_group.create", "security_group", id, { security_group: group });
      return group;
    });
  }

  /** Ids of the visible vNICs a group is attached to. */
  #nicIdsOf(groupId: string): string[] {
    return (this.#db.prepare(
      `SELECT a.nic_id FROM nic_security_groups a JOIN nics n ON n.id = a.nic_id
       WHERE a.security_group_id = ? AND n.pending = 0 ORDER BY a.nic_id`,
    ).all(groupId) as Array<{ nic_id: string }>).map((r) => r.nic_id);
  }

  /** Ids of the groups attached to a vNIC, in attachment order (insertion order: two attaches
   * within one millisecond share `attached_at`). */
  #groupIdsOf(nicId: string): string[] {
    return (this.#db.prepare(
      `SELECT security_group_id FROM nic_security_groups WHERE nic_id = ?
       ORDER BY rowid`,
    ).all(nicId) as Array<{ security_group_id: string }>).map((r) => r.security_group_id);
  }

  /** Ids of the vNICs a security group (by id or name) is attached to. */
  securityGroupNicIds(ref: string): string[] {
    return this.#nicIdsOf(this.resolveSecurityGroup(ref).id);
  }

  /**
   * Deletes a security group (by id or name) and its rules. Attached to vNICs and without
   * `force`: FAILED_PRECONDITION. With `force` it is detached from them in the same
   * transaction. Returns the ids of the vNICs it was detached from.
   */
  deleteSecurityGroup(
    ref: string,
    force: boolean,
    actor: string,
  ): { group: SecurityGroup; nicIds: string[] } {
    return this.#tx(() => {
      const group = this.resolveSecurityGroup(ref, "id");
      const nicIds = this.#nicIdsOf(group.id);
      if (nicIds.length > 0 && !force) {
        throw new ApiError(
          Status.FAILED_PRECONDITION,
          `id: security group ${JSON.stringify(group.name)} is attached to ${nicIds.length} ` +
            `vNIC(s) (nic_count ${group.nic_count}); detach it first or pass force`,
        );
      }
      this.#db.prepare("DELETE FROM security_groups WHERE id = ?").run(group.id);
      this.#audit(actor, "security_group.delete", "security_group", group.id, {
        force,
        security_group: group,
        nics_detached: nicIds,
      });
      return { group, nicIds };
    });
  }

  /**
   * Adds a validated rule to its group. ALREADY_EXISTS for a rule with the same match in the
   * group; RESOURCE_EXHAUSTED beyond {@link MAX_RULES_PER_GROUP}. Returns the rule and the
   * vNICs whose rule set changed.
   */
  addSecurityGroupRule(
    spec: RuleSpec,
    actor: string,
  ): { rule: SecurityGroupRule; nicIds: string[] } {
    return this.#tx(() => {
      const group = this.resolveSecurityGroup(spec.groupRef);
      if (group.rules.length >= MAX_RULES_PER_GROUP) {
        throw new ApiError(
          Status.RESOURCE_EXHAUSTED,
          `security_group_id: security group ${JSON.stringify(group.name)} has ` +
            `${group.rules.length} rules, the most a group may have (${MAX_RULES_PER_GROUP})`,
        );
      }
      const same = this.#db.prepare(
        `SELECT id FROM security_group_rules WHERE security_group_id = ? AND direction = ?
         AND protocol = ? AND port_start = ? AND port_end = ? AND cidr = ?`,
      ).get(
        group.id,
        spec.direction,
        spec.protocol,
        spec.portStart,
        spec.portEnd,
        spec.cidr,
      ) as { id: string } | undefined;
      if (same) {
        throw new ApiError(
          Status.ALREADY_EXISTS,
          `rule: security group ${JSON.stringify(group.name)} already has rule ${same.id} ` +
            "with the same direction, protocol, ports and cidr",
        );
      }
      const id = crypto.randomUUID();
      const t = now();
      this.#db.prepare(
        `INSERT INTO security_group_rules (id, security_group_id, direction, protocol,
           port_start, port_end, cidr, description, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        id,
        group.id,
        spec.direction,
        spec.protocol,
        spec.portStart,
        spec.portEnd,
        spec.cidr,
        spec.description,
        t,
        t,
      );
      this.#db.prepare("UPDATE security_groups SET updated_at = ? WHERE id = ?").run(t, group.id);
      const rule = toRule(
        this.#db.prepare("SELECT * FROM security_group_rules WHERE id = ?").get(
          id,
        ) as unknown as RuleRow,
      );
      this.#audit(actor, "security_group.rule.add", "security_group", group.id, { rule });
      return { rule, nicIds: this.#nicIdsOf(group.id) };
    });
  }

  /** Removes a rule by id; NOT_FOUND when absent. Returns it and the vNICs affected. */
  removeSecurityGroupRule(
    ruleId: string,
    actor: string,
  ): { rule: SecurityGroupRule; nicIds: string[] } {
    return this.#tx(() => {
      const row = this.#db.prepare("SELECT * FROM security_group_rules WHERE id = ?")
        .get(parseUuid("rule_id", ruleId)) as unknown as RuleRow | undefined;
      if (!row) throw notFound("security group rule", ruleId);
      const rule = toRule(row);
      this.#db.prepare("DELETE FROM security_group_rules WHERE id = ?").run(row.id);
      this.#db.prepare("UPDATE security_groups SET updated_at = ? WHERE id = ?").run(
        now(),
        row.security_group_id,
      );
      this.#audit(actor, "security_group.rule.remove", "security_group", row.security_group_id, {
        rule,
      });
      return { rule, nicIds: this.#nicIdsOf(row.security_group_id) };
    });
  }

  /**
   * Attaches a group to a vNIC (both by id or name). Already attached: nothing changes and
   * `attached` is false. RESOURCE_EXHAUSTED beyond {@link MAX_GROUPS_PER_NIC}.
   */
  attachSecurityGroup(
    nicRef: string,
    groupRef: string,
    actor: string,
  ): { attached: boolean; nic: NicRecord; group: SecurityGroup } {
    return this.#tx(() => {
      const nic = this.resolveNic(nicRef);
      const group = this.resolveSecurityGroup(groupRef);
      const groups = this.#groupIdsOf(nic.id);
      if (groups.includes(group.id)) return { attached: false, nic, group };
      if (groups.length >= MAX_GROUPS_PER_NIC) {
        throw new ApiError(
          Status.RESOURCE_EXHAUSTED,
          `nic_id: vNIC ${
            JSON.stringify(nic.name || nic.id)
          } already has ${groups.length} security ` +
            `groups, the most a vNIC may have (${MAX_GROUPS_PER_NIC})`,
        );
      }
      this.#db.prepare(
        "INSERT INTO nic_security_groups (nic_id, security_group_id, attached_at) VALUES (?, ?, ?)",
      ).run(nic.id, group.id, now());
      this.#audit(actor, "security_group.attach", "security_group", group.id, { nic_id: nic.id });
      return { attached: true, nic, group };
    });
  }

  /** Detaches a group from a vNIC. Not attached: nothing changes and `detached` is false. */
  detachSecurityGroup(
    nicRef: string,
    groupRef: string,
    actor: string,
  ): { detached: boolean; nic: NicRecord; group: SecurityGroup } {
    return this.#tx(() => {
      const nic = this.resolveNic(nicRef);
      const group = this.resolveSecurityGroup(groupRef);
      const r = this.#db.prepare(
        "DELETE FROM nic_security_groups WHERE nic_id = ? AND security_group_id = ?",
      ).run(nic.id, group.id);
      if (r.changes === 0) return { detached: false, nic, group };
      this.#audit(actor, "security_group.detach", "security_group", group.id, { nic_id: nic.id });
      return { detached: true, nic, group };
    });
  }

  // ---- dataplane view ----

  /** A vNIC as the dataplane needs it: with its groups and the union of their rules. */
  desiredNic(nic: NicRecord, socketPath: string): DesiredNic {
    const rules = this.#db.prepare(
      `SELECT r.* FROM nic_security_groups a
       JOIN security_group_rules r ON r.security_group_id = a.security_group_id
       WHERE a.nic_id = ? ORDER BY a.rowid, r.created_at, r.rowid`,
    ).all(nic.id) as unknown as RuleRow[];
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
      securityGroupIds: this.#groupIdsOf(nic.id),
      rules: rules.map(toDesiredRule),
    };
  }

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
      nics: rows.map((r) => this.desiredNic(this.#nicRecord(r), socketPath(r.id))),
    };
  }
}

/** True when `e` is SQLite's UNIQUE or PRIMARY KEY violation (a race the checks missed). */
export function isUniqueViolation(e: unknown): boolean {
  const code = (e as { errcode?: number }).errcode;
  return code === SQLITE_CONSTRAINT_UNIQUE || code === SQLITE_CONSTRAINT_PRIMARYKEY;
}
