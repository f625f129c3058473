/**
 * The reference backend: DPDK testpmd with `net_vhost` ports. Two ports in `io` forwarding
 * (port 0 <-> port 1, frames unchanged) for the loop and one-way benchmarks; one port in
 * `rxonly` for the guest TX path. Its forwarding lcore runs on `params.cpu`, its
 * main thread on `params.otherCpu`.
 * @module
 */

import {
  type Backend,
  type BackendPort,
  type BackendPorts,
  DEFAULT_PORTS,
  type Direction,
  type RunParams,
} from "./backend.ts";
import { ealArgs, TESTPMD, TESTPMD_MBUFS, vhostVdev } from "./dpdk.ts";
import { exists, Proc, removeDpdkRuntimeDir, shellQuote, uniquePrefix, until } from "./proc.ts";
import { onInterrupt, track, untrack } from "./registry.ts";

/** testpmd with net_vhost ports. */
export class TestpmdReference implements Backend {
  readonly name: string;
  #proc: Proc | null = null;
  #dir: string | null = null;
  #prefix: string | null = null;
  #commands: string[] = [];
  #unregister: (() => void) | null = null;

  constructor(name = "dpdk-testpmd") {
    this.name = name;
  }

  commands(): string[] {
    return this.#commands;
  }

  async start(params: RunParams): Promise<BackendPorts> {
    const [s0, s1] = await this.#launch(2, ["--forward-mode=io"], params);
    return { ...DEFAULT_PORTS, sockets: [s0, s1] };
  }

  async startSingle(direction: Direction, params: RunParams): Promise<BackendPort> {
    if (direction !== "guest-tx") throw new Error(`${this.name}: no single-port ${direction}`);
    const [s0] = await this.#launch(1, ["--forward-mode=rxonly", "--port-topology=loop"], params);
    return {
      socket: s0,
      gatewayMac: DEFAULT_PORTS.gatewayMac,
      portMac: DEFAULT_PORTS.portMacs[0],
      ips: { v4: DEFAULT_PORTS.ips.v4[0], v6: DEFAULT_PORTS.ips.v6[0] },
      peerIps: { v4: DEFAULT_PORTS.ips.v4[1], v6: DEFAULT_PORTS.ips.v6[1] },
    };
  }

  async #launch(ports: number, appArgs: string[], params: RunParams): Promise<string[]> {
    if (this.#proc) throw new Error(`${this.name} is already running`);
    this.#dir = await Deno.makeTempDir({ prefix: "mvirt-bench-" });
    this.#prefix = uniquePrefix("ref");
    this.#unregister = onInterrupt(() => this.stop());
    const sockets = Array.from({ length: ports }, (_, i) => `${this.#dir}/vnic${i}.sock`);
    const argv = [
      TESTPMD,
      ...ealArgs({
        lcores: [params.cpu, params.otherCpu],
        main: params.otherCpu,
        prefix: this.#prefix,
        vdevs: sockets.map((s, i) => vhostVdev(i, s)),
      }),
      "--",
      ...appArgs,
      "--auto-start",
      "--nb-cores=1",
      `--total-num-mbufs=${TESTPMD_MBUFS}`,
    ];
    this.#commands = [shellQuote(argv)];
    // Non-interactive testpmd forwards until its stdin gives a byte or EOF: the pipe stays
    // open while we run it, and it exits on its own if this harness dies.
    this.#proc = track(Proc.spawn(argv, { stdin: true }));
    try {
      await until(
        () => {
          if (this.#proc?.exited()) {
            throw new Error(`${TESTPMD} exited:\n${this.#proc.output().slice(-4000)}`);
          }
          return sockets.every(exists);
        },
        30_000,
        `${TESTPMD} vhost-user sockets`,
      );
    } catch (e) {
      await this.stop();
      throw e;
    }
    return sockets;
  }

  async stop(): Promise<void> {
    const p = this.#proc;
    this.#proc = null;
    if (p) {
      await p.stop();
      untrack(p);
    }
    if (this.#prefix) removeDpdkRuntimeDir(this.#prefix);
    this.#prefix = null;
    if (this.#dir) await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
    this.#dir = null;
    this.#unregister?.();
    this.#unregister = null;
  }

  /** The backend's output so far (for errors). */
  output(): string {
    return this.#proc?.output() ?? "";
  }
}
