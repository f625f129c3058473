/**
 * DPDK command lines shared by the reference backend and the load generators.
 * @module
 */

/** The binaries (Debian 12 `dpdk` / `dpdk-dev` 22.11). */
export const TESTPMD = "dpdk-testpmd";

/** Memory per DPDK process without hugepages (`--no-huge -m`), MiB. */
export const MEMORY_MB = 512;

/** mbufs of a testpmd process (without hugepages the default pool does not fit). */
export const TESTPMD_MBUFS = 32768;

/** virtio-user ring size (descriptors per queue) of every frontend. */
export const QUEUE_SIZE = 1024;

/**
 * EAL arguments of one DPDK process: the given lcores (lcore id = CPU id), the main lcore,
 * no PCI, no hugepages, its own runtime prefix, no telemetry socket.
 */
export function ealArgs(
  opts: { lcores: number[]; main: number; prefix: string; vdevs: string[] },
): string[] {
  const args = ["-l", [...opts.lcores].sort((a, b) => a - b).join(",")];
  if (opts.lcores.length > 1) args.push("--main-lcore", String(opts.main));
  args.push(
    "--no-pci",
    "--no-huge",
    "-m",
    String(MEMORY_MB),
    "--file-prefix",
    opts.prefix,
    "--no-telemetry",
  );
  for (const v of opts.vdevs) args.push("--vdev", v);
  return args;
}

/** A virtio-user frontend vdev on a vhost-user socket (DPDK as the guest's driver). */
export function virtioUserVdev(index: number, socket: string, mac?: string): string {
  let v = `net_virtio_user${index},path=${socket},queues=1,queue_size=${QUEUE_SIZE}`;
  if (mac) v += `,mac=${mac}`;
  return v;
}

/** A vhost-user backend vdev (DPDK as the backend, serving the socket). */
export function vhostVdev(index: number, socket: string): string {
  return `net_vhost${index},iface=${socket},queues=1`;
}
