/**
 * `mvirt-net-cli`: the command-line client of the NetService API.
 *
 * Human-readable tables by default, `--json` for scripts (the API's own field names). Errors
 * print as `error: <STATUS>: <message>` and exit 1; usage errors exit 2.
 *
 * Run: `deno run --allow-net --allow-read --allow-env api/cli.ts network list`
 * (or `scripts/deno task cli network list`).
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { loadContract } from "./proto.ts";
import type {
  DiagnosticsMethods,
  NetServiceMethods,
  Network,
  NetworkEvent,
  Nic,
  NicEvent,
  RuleDirection,
  RuleProtocol,
  SecurityGroup,
  SecurityGroupRule,
} from "./proto_types.ts";
import { DEFAULT_LISTEN } from "../daemon/config.ts";
import { parseIp } from "./validate.ts";

/** Environment variable that overrides the default server. */
export const SERVER_ENV = "MVIRT_NET_SERVER";
/** Deadline of one unary call. */
const CALL_TIMEOUT_MS = 10_000;

const USAGE = `Usage: mvirt-net-cli [--server ADDR] [--json] COMMAND

Commands:
  version
  network create NAME [--ipv4-subnet CIDR] [--ipv6-prefix CIDR] [--dns IP]... [--ntp SERVER]...
                      [--public] [--id UUID]
  network list
  network get ID|NAME
  network update ID|NAME [--dns IP]... [--ntp SERVER]... [--clear-dns] [--clear-ntp]
  network delete ID|NAME [--force]
  nic create --network ID|NAME [--name NAME] [--mac MAC] [--ipv4 ADDR] [--ipv6 ADDR]
             [--route CIDR]... [--id UUID]
  nic list [--network ID|NAME]
  nic get ID|NAME
  nic update ID|NAME [--route CIDR]...      (the routes given replace the current ones)
  nic delete ID|NAME
  nic attach ID|NAME
  nic counters ID|NAME                      (packet, byte and drop counters of the data plane)
  sg create NAME [--description TEXT]
  sg list
  sg get ID|NAME                            (with the packets each rule allowed: HITS,
                                             "hits" in --json)
  sg delete ID|NAME [--force]               (--force detaches it from its vNICs first)
  sg rule add ID|NAME --direction ingress|egress --protocol all|tcp|udp|icmp|icmpv6
              [--port N|N-M] [--cidr CIDR] [--description TEXT]
  sg rule remove RULE_ID
  sg attach ID|NAME NIC                     (NIC: vNIC id or name)
  sg detach ID|NAME NIC
  watch [nics|networks] [--count N]         (both kinds by default; stop after N events)

Options:
  --server ADDR   HOST:PORT, [V6]:PORT or unix:/path (default ${DEFAULT_LISTEN}, or $${SERVER_ENV})
  --json          machine-readable output: one JSON document (watch: one per line)`;

/** A wrong command line: printed with the usage, exit 2. */
class UsageError extends Error {}

/** Flags of one command: repeated flags collect into arrays. */
interface Parsed {
  positional: string[];
  values: Map<string, string[]>;
  switches: Set<string>;
}

const SWITCHES = new Set(["--json", "--public", "--force", "--clear-dns", "--clear-ntp"]);
const VALUED = new Set([
  "--description",
  "--direction",
  "--protocol",
  "--port",
  "--cidr",
  "--server",
  "--ipv4-subnet",
  "--ipv6-prefix",
  "--dns",
  "--ntp",
  "--id",
  "--network",
  "--name",
  "--mac",
  "--ipv4",
  "--ipv6",
  "--route",
  "--count",
]);

function parse(args: string[]): Parsed {
  const p: Parsed = { positional: [], values: new Map(), switches: new Set() };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) {
      p.positional.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq >= 0 ? a.slice(0, eq) : a;
    if (SWITCHES.has(name)) {
      if (eq >= 0) throw new UsageError(`${name} takes no value`);
      p.switches.add(name);
    } else if (VALUED.has(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined) throw new UsageError(`${name} needs a value`);
      p.values.set(name, [...(p.values.get(name) ?? []), v]);
    } else {
      throw new UsageError(`unknown option ${name}`);
    }
  }
  return p;
}

function one(p: Parsed, flag: string): string | undefined {
  const v = p.values.get(flag);
  if (v && v.length > 1) throw new UsageError(`${flag} given more than once`);
  return v?.[0];
}

function many(p: Parsed, flag: string): string[] {
  return p.values.get(flag) ?? [];
}

type Unary = {
  [K in keyof NetServiceMethods]: NetServiceMethods[K]["responseStream"] extends false ? K
    : never;
}[keyof NetServiceMethods];

type RawClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** One unary call with the CLI's deadline. */
function unary<T>(client: RawClient, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + CALL_TIMEOUT_MS);
    (client[method] as (
      r: unknown,
      m: grpc.Metadata,
      o: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, v: unknown) => void,
    ) => void).call(
      client,
      req,
      new grpc.Metadata(),
      { deadline },
      (e, v) => e ? reject(e) : resolve(v as T),
    );
  });
}

/** `--direction` values and the API's names. */
const DIRECTIONS: Record<string, RuleDirection> = {
  ingress: "RULE_DIRECTION_INGRESS",
  egress: "RULE_DIRECTION_EGRESS",
};
/** `--protocol` values and the API's names. */
const PROTOCOLS: Record<string, RuleProtocol> = {
  all: "RULE_PROTOCOL_ALL",
  tcp: "RULE_PROTOCOL_TCP",
  udp: "RULE_PROTOCOL_UDP",
  icmp: "RULE_PROTOCOL_ICMP",
  icmpv6: "RULE_PROTOCOL_ICMPV6",
};

function choice<T>(flag: string, value: string | undefined, options: Record<string, T>): T {
  if (value === undefined) throw new UsageError(`${flag} is required`);
  if (!Object.hasOwn(options, value.toLowerCase())) {
    throw new UsageError(`${flag}: "${value}" is not one of ${Object.keys(options).join(", ")}`);
  }
  return options[value.toLowerCase()];
}

/** `--port 80` (one port) or `--port 8000-8100`; absent: any port. */
function portRange(value: string | undefined): { start: number; end: number } {
  if (value === undefined) return { start: 0, end: 0 };
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(value);
  if (!m) throw new UsageError(`--port: expected N or N-M, got "${value}"`);
  const start = Number(m[1]);
  return { start, end: m[2] === undefined ? start : Number(m[2]) };
}

/** The client side of one CLI run. */
class Cli {
  #client: RawClient;
  #diag: RawClient;
  #json: boolean;
  #out: (line: string) => void;

  constructor(server: string, json: boolean, out: (line: string) => void) {
    const { NetService, Diagnostics } = loadContract();
    this.#client = new NetService(server, grpc.credentials.createInsecure()) as RawClient;
    // A second stub on the same target shares grpc-js's connection to it.
    this.#diag = new Diagnostics(server, grpc.credentials.createInsecure()) as RawClient;
    this.#json = json;
    this.#out = out;
  }

  close(): void {
    this.#client.close();
    this.#diag.close();
  }

  call<M extends Unary>(
    method: M,
    req: Partial<NetServiceMethods[M]["request"]>,
  ): Promise<NetServiceMethods[M]["response"]> {
    return unary(this.#client, method, req);
  }

  diag<M extends keyof DiagnosticsMethods>(
    method: M,
    req: DiagnosticsMethods[M]["request"],
  ): Promise<DiagnosticsMethods[M]["response"]> {
    return unary(this.#diag, method, req);
  }

  async group(ref: string): Promise<SecurityGroup> {
    return await this.call("GetSecurityGroup", isUuidLike(ref) ? { id: ref } : { name: ref });
  }

  /** Packets each rule of `group` allowed; null when the data plane cannot be asked. */
  async hits(group: SecurityGroup): Promise<Map<string, number> | null> {
    try {
      const h = await this.diag("GetSecurityGroupHits", { security_group: group.id });
      return new Map(h.rules.map((r) => [r.rule_id, r.hits]));
    } catch (e) {
      if ((e as grpc.ServiceError).code === grpc.status.UNAVAILABLE) return null;
      throw e;
    }
  }

  /** A network by id or name (GetNetwork's oneof needs to know which). */
  async network(ref: string): Promise<Network> {
    return await this.call("GetNetwork", isUuidLike(ref) ? { id: ref } : { name: ref });
  }

  async nic(ref: string): Promise<Nic> {
    return await this.call("GetNic", isUuidLike(ref) ? { id: ref } : { name: ref });
  }

  print(value: unknown, human: () => string): void {
    this.#out(this.#json ? JSON.stringify(value, null, 2) : human());
  }

  async run(p: Parsed): Promise<void> {
    const [group, verb, ...rest] = p.positional;
    const key = group === "version" || group === "watch" ? group : `${group} ${verb ?? ""}`;
    const args = group === "version" || group === "watch" ? p.positional.slice(1) : rest;
    const arg = (what: string) => {
      if (args.length !== 1) throw new UsageError(`${key}: expected one ${what}`);
      return args[0];
    };
    switch (key) {
      case "version": {
        const v = await this.call("GetVersion", {});
        this.print(v, () => v.version);
        return;
      }
      case "network create": {
        const v4 = one(p, "--ipv4-subnet") ?? "";
        const v6 = one(p, "--ipv6-prefix") ?? "";
        const net = await this.call("CreateNetwork", {
          name: arg("NAME"),
          ipv4_enabled: v4 !== "",
          ipv4_subnet: v4,
          ipv6_enabled: v6 !== "",
          ipv6_prefix: v6,
          dns_servers: many(p, "--dns"),
          ntp_servers: many(p, "--ntp"),
          is_public: p.switches.has("--public"),
          id: one(p, "--id") ?? "",
        });
        this.print(net, () => showNetwork(net));
        return;
      }
      case "network list": {
        const { networks } = await this.call("ListNetworks", {});
        this.print(networks, () =>
          table(
            ["NAME", "ID", "IPV4", "IPV6", "NICS", "PUBLIC"],
            networks.map((n) => [
              n.name,
              n.id,
              n.ipv4_subnet || "-",
              n.ipv6_prefix || "-",
              String(n.nic_count),
              n.is_public ? "yes" : "no",
            ]),
          ));
        return;
      }
      case "network get": {
        const net = await this.network(arg("ID or NAME"));
        this.print(net, () => showNetwork(net));
        return;
      }
      case "network update": {
        const cur = await this.network(arg("ID or NAME"));
        const dns = p.switches.has("--clear-dns") ? [] : many(p, "--dns");
        const ntp = p.switches.has("--clear-ntp") ? [] : many(p, "--ntp");
        const touched = (flag: string, clear: string) =>
          p.values.has(flag) || p.switches.has(clear);
        if (!touched("--dns", "--clear-dns") && !touched("--ntp", "--clear-ntp")) {
          throw new UsageError("network update: give --dns, --ntp, --clear-dns or --clear-ntp");
        }
        const net = await this.call("UpdateNetwork", {
          id: cur.id,
          dns_servers: touched("--dns", "--clear-dns") ? dns : cur.dns_servers,
          ntp_servers: touched("--ntp", "--clear-ntp") ? ntp : cur.ntp_servers,
        });
        this.print(net, () => showNetwork(net));
        return;
      }
      case "network delete": {
        const cur = await this.network(arg("ID or NAME"));
        const r = await this.call("DeleteNetwork", {
          id: cur.id,
          force: p.switches.has("--force"),
        });
        this.print(r, () => `deleted network ${cur.name} (${r.nics_deleted} vNIC(s) deleted)`);
        return;
      }
      case "nic create": {
        if (args.length > 0) throw new UsageError(`nic create: unexpected ${args[0]}`);
        const network = one(p, "--network");
        if (!network) throw new UsageError("nic create: --network is required");
        const routes = splitRoutes(many(p, "--route"));
        const nic = await this.call("CreateNic", {
          network_id: network,
          name: one(p, "--name") ?? "",
          mac_address: one(p, "--mac") ?? "",
          ipv4_address: one(p, "--ipv4") ?? "",
          ipv6_address: one(p, "--ipv6") ?? "",
          routed_ipv4_prefixes: routes.v4,
          routed_ipv6_prefixes: routes.v6,
          id: one(p, "--id") ?? "",
        });
        this.print(nic, () => showNic(nic));
        return;
      }
      case "nic list": {
        if (args.length > 0) throw new UsageError(`nic list: unexpected ${args[0]}`);
        const { nics } = await this.call("ListNics", { network_id: one(p, "--network") ?? "" });
        this.print(nics, () =>
          table(
            ["NAME", "ID", "NETWORK", "IPV4", "IPV6", "MAC", "STATE"],
            nics.map((n) => [
              n.name || "-",
              n.id,
              n.network_id,
              n.ipv4_address || "-",
              n.ipv6_address || "-",
              n.mac_address,
              stateName(n.state),
            ]),
          ));
        return;
      }
      case "nic get": {
        const nic = await this.nic(arg("ID or NAME"));
        this.print(nic, () => showNic(nic));
        return;
      }
      case "nic update": {
        const cur = await this.nic(arg("ID or NAME"));
        const routes = splitRoutes(many(p, "--route"));
        const nic = await this.call("UpdateNic", {
          id: cur.id,
          routed_ipv4_prefixes: routes.v4,
          routed_ipv6_prefixes: routes.v6,
        });
        this.print(nic, () => showNic(nic));
        return;
      }
      case "nic delete": {
        const cur = await this.nic(arg("ID or NAME"));
        const r = await this.call("DeleteNic", { id: cur.id });
        this.print(r, () => `deleted vNIC ${cur.name || cur.id}`);
        return;
      }
      case "nic attach": {
        const cur = await this.nic(arg("ID or NAME"));
        const r = await this.call("AttachNic", { id: cur.id });
        this.print(r, () => `${r.attached ? "attached" : "not attached"}: ${r.message}`);
        return;
      }
      case "nic counters": {
        const r = await this.diag("GetNicCounters", { nic: arg("ID or NAME") });
        this.print(
          r,
          () => table(["COUNTER", "VALUE"], r.counters.map((c) => [c.name, String(c.value)])),
        );
        return;
      }
      case "sg create": {
        const g = await this.call("CreateSecurityGroup", {
          name: arg("NAME"),
          description: one(p, "--description") ?? "",
        });
        this.print(g, () => showGroup(g, NO_HITS_YET));
        return;
      }
      case "sg list": {
        if (args.length > 0) throw new UsageError(`sg list: unexpected ${args[0]}`);
        const { security_groups: groups } = await this.call("ListSecurityGroups", {});
        this.print(groups, () =>
          table(
            ["NAME", "ID", "RULES", "NICS", "DESCRIPTION"],
            groups.map((g) => [
              g.name,
              g.id,
              String(g.rules.length),
              String(g.nic_count),
              g.description || "-",
            ]),
          ));
        return;
      }
      case "sg get": {
        const g = await this.group(arg("ID or NAME"));
        const hits = await this.hits(g);
        const json = {
          ...g,
          rules: g.rules.map((r) => ({ ...r, hits: hits?.get(r.id) ?? null })),
        };
        this.print(json, () => showGroup(g, hits));
        return;
      }
      case "sg delete": {
        const g = await this.group(arg("ID or NAME"));
        const r = await this.call("DeleteSecurityGroup", {
          id: g.id,
          force: p.switches.has("--force"),
        });
        this.print(
          r,
          () => `deleted security group ${g.name} (detached from ${r.nics_detached} vNIC(s))`,
        );
        return;
      }
      case "sg rule":
        await this.rule(args, p);
        return;
      case "sg attach":
      case "sg detach": {
        if (args.length !== 2) throw new UsageError(`${key}: expected a group and a vNIC`);
        const [group, nic] = args;
        const req = { security_group_id: group, nic_id: nic };
        if (verb === "attach") {
          const r = await this.call("AttachSecurityGroup", req);
          this.print(
            r,
            () =>
              r.attached
                ? `attached security group ${group} to vNIC ${nic}`
                : `security group ${group} was already attached to vNIC ${nic}`,
          );
        } else {
          const r = await this.call("DetachSecurityGroup", req);
          this.print(
            r,
            () =>
              r.detached
                ? `detached security group ${group} from vNIC ${nic}`
                : `security group ${group} was not attached to vNIC ${nic}`,
          );
        }
        return;
      }
      case "watch":
        await this.watch(args, one(p, "--count"));
        return;
      default:
        throw new UsageError(`unknown command "${p.positional.join(" ")}"`);
    }
  }

  /** `sg rule add GROUP …` and `sg rule remove RULE_ID`. */
  async rule(args: string[], p: Parsed): Promise<void> {
    const [verb, ...rest] = args;
    if (verb === "add") {
      if (rest.length !== 1) throw new UsageError("sg rule add: expected one group ID or NAME");
      const ports = portRange(one(p, "--port"));
      const rule = await this.call("AddSecurityGroupRule", {
        security_group_id: rest[0],
        direction: choice("--direction", one(p, "--direction"), DIRECTIONS),
        protocol: choice("--protocol", one(p, "--protocol"), PROTOCOLS),
        port_start: ports.start,
        port_end: ports.end,
        cidr: one(p, "--cidr") ?? "",
        description: one(p, "--description") ?? "",
      });
      this.print(rule, () => showRules([rule], NO_HITS_YET));
      return;
    }
    if (verb === "remove") {
      if (rest.length !== 1) throw new UsageError("sg rule remove: expected one RULE_ID");
      const r = await this.call("RemoveSecurityGroupRule", { rule_id: rest[0] });
      this.print(r, () => `removed rule ${rest[0]}`);
      return;
    }
    throw new UsageError(`unknown command "sg rule ${verb ?? ""}"`);
  }

  async watch(kinds: string[], countText: string | undefined): Promise<void> {
    const wanted = kinds.length === 0 ? ["nics", "networks"] : kinds;
    for (const k of wanted) {
      if (k !== "nics" && k !== "networks") throw new UsageError(`watch: unknown kind "${k}"`);
    }
    const limit = countText === undefined ? Infinity : Number(countText);
    if (!(limit > 0 && Number.isInteger(limit) || limit === Infinity)) {
      throw new UsageError(`--count: expected a positive whole number, got "${countText}"`);
    }
    let seen = 0;
    const streams: grpc.ClientReadableStream<NicEvent | NetworkEvent>[] = [];
    await new Promise<void>((resolve, reject) => {
      const stop = () => {
        Deno.removeSignalListener("SIGINT", stop);
        for (const s of streams) s.cancel();
        resolve();
      };
      const onEvent = (kind: "nic" | "network") => (e: NicEvent | NetworkEvent) => {
        if (seen >= limit) return;
        seen++;
        this.#out(this.#json ? JSON.stringify({ kind, ...e }) : showEvent(kind, e));
        if (seen >= limit) stop();
      };
      for (const k of wanted) {
        const s = (k === "nics"
          ? this.#client.WatchNics({})
          : this.#client.WatchNetworks({})) as grpc.ClientReadableStream<NicEvent | NetworkEvent>;
        streams.push(s);
        s.on("data", onEvent(k === "nics" ? "nic" : "network"));
        s.on("error", (e: grpc.ServiceError) => {
          if (e.code !== grpc.status.CANCELLED) {
            reject(e);
          }
        });
        s.on("end", stop);
      }
      Deno.addSignalListener("SIGINT", stop);
    });
  }
}

function isUuidLike(s: string): boolean {
  return /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(s);
}

/** `--route` takes either family; the API keeps them in two lists. */
function splitRoutes(routes: string[]): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const r of routes) {
    const ip = parseIp(r.split("/")[0]);
    (ip?.family === 6 ? v6 : v4).push(r);
  }
  return { v4, v6 };
}

function stateName(s: string): string {
  return s.replace(/^NIC_STATE_/, "");
}

function table(head: string[], rows: string[][]): string {
  if (rows.length === 0) return "(none)";
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

function fields(pairs: Array<[string, string]>): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n");
}

function showNetwork(n: Network): string {
  return fields([
    ["name", n.name],
    ["id", n.id],
    ["ipv4_subnet", n.ipv4_subnet || "-"],
    ["ipv6_prefix", n.ipv6_prefix || "-"],
    ["dns_servers", n.dns_servers.join(", ") || "-"],
    ["ntp_servers", n.ntp_servers.join(", ") || "-"],
    ["public", n.is_public ? "yes" : "no"],
    ["nic_count", String(n.nic_count)],
    ["created_at", n.created_at],
    ["updated_at", n.updated_at],
  ]);
}

function showNic(n: Nic): string {
  return fields([
    ["name", n.name || "-"],
    ["id", n.id],
    ["network_id", n.network_id],
    ["mac_address", n.mac_address],
    ["ipv4_address", n.ipv4_address || "-"],
    ["ipv6_address", n.ipv6_address || "-"],
    ["routed_ipv4", n.routed_ipv4_prefixes.join(", ") || "-"],
    ["routed_ipv6", n.routed_ipv6_prefixes.join(", ") || "-"],
    ["socket_path", n.socket_path],
    ["state", stateName(n.state)],
    ["created_at", n.created_at],
    ["updated_at", n.updated_at],
  ]);
}

/** Hits of rules that were just created: none. */
const NO_HITS_YET: ReadonlyMap<string, number> = new Map();

function ports(r: SecurityGroupRule): string {
  if (r.port_start === 0) return "any";
  return r.port_end === r.port_start ? String(r.port_start) : `${r.port_start}-${r.port_end}`;
}

function showRules(rules: SecurityGroupRule[], hits: ReadonlyMap<string, number> | null): string {
  return table(
    ["RULE", "DIRECTION", "PROTOCOL", "PORTS", "CIDR", "HITS", "DESCRIPTION"],
    rules.map((r) => [
      r.id,
      r.direction.replace(/^RULE_DIRECTION_/, "").toLowerCase(),
      r.protocol.replace(/^RULE_PROTOCOL_/, "").toLowerCase(),
      ports(r),
      r.cidr || "any",
      hits ? String(hits.get(r.id) ?? 0) : "-",
      r.description || "-",
    ]),
  );
}

function showGroup(g: SecurityGroup, hits: ReadonlyMap<string, number> | null): string {
  return [
    fields([
      ["name", g.name],
      ["id", g.id],
      ["description", g.description || "-"],
      ["nic_count", String(g.nic_count)],
      ["created_at", g.created_at],
      ["updated_at", g.updated_at],
    ]),
    "",
    showRules(g.rules, hits),
    ...(hits ? [] : ["(hits unknown: the data plane is not connected)"]),
  ].join("\n");
}

function showEvent(kind: "nic" | "network", e: NicEvent | NetworkEvent): string {
  const time = new Date(e.timestamp).toISOString();
  if (kind === "nic") {
    const ev = e as NicEvent;
    return ev.nic
      ? `${time} nic ${ev.nic_id} ${ev.nic.name || "-"} ${ev.nic.ipv4_address || "-"} ${
        stateName(ev.nic.state)
      }`
      : `${time} nic ${ev.nic_id} deleted`;
  }
  const ev = e as NetworkEvent;
  return ev.network
    ? `${time} network ${ev.network_id} ${ev.network.name} nics=${ev.network.nic_count}`
    : `${time} network ${ev.network_id} deleted`;
}

/** Runs the CLI with `args`; returns the exit code. Output goes to `out`, errors to `err`. */
export async function main(
  args: string[],
  out: (line: string) => void = console.log,
  err: (line: string) => void = console.error,
): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    out(USAGE);
    return 0;
  }
  let p: Parsed;
  try {
    p = parse(args);
    if (p.positional.length === 0) throw new UsageError("no command given");
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err(`error: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  let server: string;
  try {
    server = one(p, "--server") ?? Deno.env.get(SERVER_ENV) ?? DEFAULT_LISTEN;
  } catch (e) {
    err(`error: ${(e as Error).message}`);
    return 2;
  }
  const cli = new Cli(server, p.switches.has("--json"), out);
  try {
    await cli.run(p);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`error: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    const se = e as grpc.ServiceError;
    if (typeof se.code === "number") {
      err(`error: ${grpc.status[se.code]}: ${se.details}`);
      return 1;
    }
    throw e;
  } finally {
    cli.close();
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
