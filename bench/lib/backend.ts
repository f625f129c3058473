/**
 * What a benchmarked backend is: something that serves vhost-user sockets for two vNICs of
 * one network. "Ours" (mvirt-net) and the reference (DPDK testpmd) both implement it.
 * @module
 */

/** A MAC address, `02:00:00:00:00:01` form. */
export type Mac = string;

/** Where the load generator attaches and how it must address its frames. */
export interface BackendPorts {
  /** vhost-user sockets of the two vNICs, guest A (port 0) and guest B (port 1). */
  sockets: [string, string];
  /** The destination MAC of every frame a guest sends (the router's gateway MAC). */
  gatewayMac: Mac;
  /** The guests' MACs (source MACs of their frames; the virtio-user ports get them too). */
  portMacs: [Mac, Mac];
  /** The guests' addresses (a /32 and a /128 each). */
  ips: { v4: [string, string]; v6: [string, string] };
}

/** One port of a single-direction run. */
export interface BackendPort {
  socket: string;
  gatewayMac: Mac;
  portMac: Mac;
  ips: { v4: string; v6: string };
  /** Where the guest's frames go (`--tx-ip` of testpmd txonly): the other vNIC's addresses. */
  peerIps: { v4: string; v6: string };
}

/**
 * Single-port modes, named from the guest's view: `guest-tx` = the guest sends and the
 * backend consumes (vhost dequeue path). The guest RX path needs a source of frames that
 * ours does not have by itself, so it is measured with two ports (the generator's
 * `--oneway`), not here.
 */
export type Direction = "guest-tx";

/** Parameters of a run that a backend may need (frame size for a traffic source). */
export interface RunParams {
  /** Frame length in bytes including the Ethernet header, without FCS. */
  frameSize: number;
  /** The CPU its busy-polling thread must run on. */
  cpu: number;
  /** The other CPU (main/control threads). */
  otherCpu: number;
}

/** A backend under test. One instance runs at a time (they all busy-poll the same core). */
export interface Backend {
  /** Short name for tables: `mvirt-net`, `dpdk-testpmd`. */
  readonly name: string;
  /**
   * Starts the backend for two vNICs of one network and resolves once its sockets accept
   * connections. The generator then waits until a frame gets through each way.
   */
  start(params: RunParams): Promise<BackendPorts>;
  /** Stops it and removes everything it created (processes by PID, sockets, runtime dirs). */
  stop(): Promise<void>;
  /** The exact commands the last start() ran, for the report. */
  commands(): string[];
  /**
   * Optional: starts the backend for a `guest-tx` run: the guest (testpmd txonly) attaches
   * to one vNIC and sends to {@link BackendPort.peerIps}; the backend consumes the frames.
   */
  startSingle?(direction: Direction, params: RunParams): Promise<BackendPort>;
}

/** Guests' defaults shared by all backends (documentation ranges / ULA). */
export const DEFAULT_PORTS = {
  gatewayMac: "02:00:00:00:00:01",
  portMacs: ["02:00:00:00:00:0a", "02:00:00:00:00:0b"] as [Mac, Mac],
  ips: {
    v4: ["10.0.0.2", "10.0.0.3"] as [string, string],
    v6: ["fd00::2", "fd00::3"] as [string, string],
  },
};
