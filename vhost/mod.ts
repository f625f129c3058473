/**
 * vhost-user virtio-net backend: the device ({@link VhostNetDevice}), its frame batches and
 * the wire codec.
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
export * from "./protocol.ts";
