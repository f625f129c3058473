/**
 * "Ours": the mvirt-net backend. {@link MvirtNetBackend} starts the daemon (daemon/main.ts)
 * in a temporary directory, creates one network with two vNICs through the gRPC API (guest A
 * and B, a /32 and a /128 each, the generator's MACs), pins every thread of the dataplane
 * process to `params.cpu`, and resolves once both vhost-user sockets accept connections.
 * `stop()` stops the daemon by PID and removes its directories.
 * @module
 */

import { GATEWAY_MAC } from "../../services/context.ts";
import {
  type Backend,
  type BackendPort,
  type BackendPorts,
  DEFAULT_PORTS,
  type Direction,
  type RunParams,
} from "./backend.ts";
import { type OurDaemon, startOurDaemon, unixAccepts } from "./daemon.ts";
import { until } from "./proc.ts";
import { TestpmdReference } from "./reference.ts";

/** Our network of the benchmarks: the generator's addresses (10.0.0.2/3, fd00::2/3). */
export const BENCH_NETWORK = {
  name: "bench",
  ipv4_enabled: true,
  ipv4_subnet: "10.0.0.0/24",
  ipv6_enabled: true,
  ipv6_prefix: "fd00::/64",
};

/** The gateway MAC of our router, `02:6d:76:00:00:01` form. */
export const OUR_GATEWAY_MAC = [...GATEWAY_MAC].map((b) => b.toString(16).padStart(2, "0"))
  .join(":");

/** Time until both vNIC sockets accept after CreateNic returned. */
const SOCKET_TIMEOUT_MS = 20_000;

/** The API calls that set up a network with two vNICs, as CLI commands for the report. */
function cliCommands(): string[] {
  const p = DEFAULT_PORTS;
  return [
    `scripts/deno task cli --server <addr> network create bench --ipv4-subnet ${BENCH_NETWORK.ipv4_subnet} --ipv6-prefix ${BENCH_NETWORK.ipv6_prefix}`,
    ...[0, 1].map((i) =>
      `scripts/deno task cli --server <addr> nic create --network bench --name guest-${
        "ab"[i]
      } --mac ${p.portMacs[i]} --ipv4 ${p.ips.v4[i]} --ipv6 ${p.ips.v6[i]}`
    ),
  ];
}

/** Our backend, one daemon per start(). */
export class MvirtNetBackend implements Backend {
  readonly name = "mvirt-net";
  #daemon: OurDaemon | null = null;
  #commands: string[] = [];
  /** Extra setup after the vNICs exist (the security-group benchmark attaches rules). */
  readonly afterCreate?: (d: OurDaemon, nicIds: [string, string]) => Promise<void>;
  /** What afterCreate does, for the report. */
  readonly setupCommands: string[];

  constructor(
    afterCreate?: (d: OurDaemon, nicIds: [string, string]) => Promise<void>,
    setupCommands: string[] = [],
  ) {
    this.afterCreate = afterCreate;
    this.setupCommands = setupCommands;
  }

  commands(): string[] {
    return this.#commands;
  }

  /** The running daemon (for counters and PIDs), null when stopped. */
  get daemon(): OurDaemon | null {
    return this.#daemon;
  }

  async start(params: RunParams): Promise<BackendPorts> {
    if (this.#daemon) throw new Error(`${this.name} is already running`);
    const d = await startOurDaemon();
    this.#daemon = d;
    try {
      const net = await d.client.call("CreateNetwork", BENCH_NETWORK);
      const p = DEFAULT_PORTS;
      const nics = [];
      for (const i of [0, 1]) {
        nics.push(
          await d.client.call("CreateNic", {
            network_id: net.id,
            name: `guest-${"ab"[i]}`,
            mac_address: p.portMacs[i],
            ipv4_address: p.ips.v4[i],
            ipv6_address: p.ips.v6[i],
          }),
        );
      }
      if (this.afterCreate) await this.afterCreate(d, [nics[0].id, nics[1].id]);
      const sockets: [string, string] = [nics[0].socket_path, nics[1].socket_path];
      await until(
        async () => (await Promise.all(sockets.map(unixAccepts))).every(Boolean),
        SOCKET_TIMEOUT_MS,
        "both vNIC sockets to accept",
      );
      const pin = await d.pinDataplane(params.cpu);
      this.#commands = [d.command, ...cliCommands(), ...this.setupCommands, pin];
      return {
        sockets,
        gatewayMac: OUR_GATEWAY_MAC,
        portMacs: p.portMacs,
        ips: p.ips,
      };
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /**
   * Single direction, `guest-tx`: both vNICs exist, the guest attaches to A only and sends
   * to B's address; we route every frame to B, whose (absent) guest has no RX ring, so B
   * drops it. The figure is what A's TX ring gives up per second.
   */
  async startSingle(direction: Direction, params: RunParams): Promise<BackendPort> {
    if (direction !== "guest-tx") {
      throw new Error(`${this.name}: ${direction} is measured with two ports (--oneway)`);
    }
    const ports = await this.start(params);
    return {
      socket: ports.sockets[0],
      gatewayMac: ports.gatewayMac,
      portMac: ports.portMacs[0],
      ips: { v4: ports.ips.v4[0], v6: ports.ips.v6[0] },
      peerIps: { v4: ports.ips.v4[1], v6: ports.ips.v6[1] },
    };
  }

  async stop(): Promise<void> {
    const d = this.#daemon;
    this.#daemon = null;
    if (d) await d.stop();
  }
}

/** Backends selectable as "ours" with `--ours NAME`. */
export const OURS: Record<string, () => Backend | string> = {
  /** Our backend; a string is the reason it cannot run. */
  "mvirt-net": () => new MvirtNetBackend(),
  /** The reference measured against itself: the A/A noise check of the setup. */
  "reference": () => new TestpmdReference("dpdk-testpmd (A/A)"),
  "none": () => "not requested (--ours none)",
};
