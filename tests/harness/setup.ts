/**
 * Shared set-up of the vhost tests: a device in this thread on a fresh socket, a frontend that
 * pumps it, and the transitions the device reported.
 * @module
 */

import { type DeviceTransition, VhostNetDevice } from "../../vhost/device.ts";
import { Frontend, type FrontendOptions, type Negotiation } from "./frontend.ts";
import { bit, Feature, ProtocolFeature } from "../../vhost/protocol.ts";

/** Every feature the backend offers. */
export const ALL_FEATURES = bit(Feature.VERSION_1) | bit(Feature.NET_MRG_RXBUF) |
  bit(Feature.RING_EVENT_IDX) | bit(Feature.RING_INDIRECT_DESC) | bit(Feature.NET_MAC) |
  bit(Feature.NET_STATUS) | bit(Feature.NET_MTU) | bit(Feature.PROTOCOL_FEATURES);
/** Every protocol feature the backend offers. */
export const ALL_PROTOCOL_FEATURES = bit(ProtocolFeature.REPLY_ACK) |
  bit(ProtocolFeature.BACKEND_REQ) | bit(ProtocolFeature.CONFIG) |
  bit(ProtocolFeature.RESET_DEVICE) | bit(ProtocolFeature.CONFIGURE_MEM_SLOTS) |
  bit(ProtocolFeature.STATUS);

export const TEST_MAC = "52:54:00:12:34:56";

/** A device and an in-thread frontend attached to it. */
export interface Rig {
  dir: string;
  socketPath: string;
  dev: VhostNetDevice;
  transitions: DeviceTransition[];
  connect(opts?: Partial<FrontendOptions>): Frontend;
  /** Runs the device's service once (what a poll loop does on CONTROL). */
  pump(): void;
  close(): void;
}

/** Creates a device on a socket in a fresh temporary directory. */
export function rig(mtu?: number): Rig {
  const dir = Deno.makeTempDirSync({ prefix: "mvnet-test-" });
  const socketPath = `${dir}/nic.sock`;
  const dev = VhostNetDevice.create({ socketPath, mac: TEST_MAC, mtu });
  const transitions: DeviceTransition[] = [];
  const frontends: Frontend[] = [];
  const pump = () => {
    transitions.push(...dev.service());
  };
  return {
    dir,
    socketPath,
    dev,
    transitions,
    pump,
    connect(opts = {}) {
      const fe = Frontend.connect({ socketPath, pump, ...opts });
      frontends.push(fe);
      return fe;
    },
    close() {
      for (const fe of frontends.splice(0)) fe.close();
      dev.close();
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** A rig with a frontend that negotiated `n` and runs both rings. */
export function running(n: Negotiation, mtu?: number): { r: Rig; fe: Frontend } {
  const r = rig(mtu);
  const fe = r.connect();
  fe.negotiate(n);
  return { r, fe };
}
