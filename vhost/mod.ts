/**
 * vhost-user virtio-net backend: the device ({@link VhostNetDevice}), its frame batches, the
 * receive side that adapts frames to the guest's offloads ({@link GuestReceiver}) and the wire
 * codec.
 * @module
 */

export {
  DEFAULT_MTU,
  DeviceEvents,
  type DeviceOptions,
  type DeviceTransition,
  parseMac,
  VhostNetDevice,
} from "./device.ts";
export { FrameBatch } from "./frame_batch.ts";
export { GuestReceiver } from "./receive.ts";
export * from "./protocol.ts";
