/**
 * Test guests for the VM benchmarks (TCP throughput, ping latency): QEMU under TCG with the
 * kernel and initramfs of `scripts/guest/build.sh`, one virtio-net NIC on a vhost-user
 * socket or on a tap device, driven over the serial console by the guest's command agent
 * (`scripts/guest/mv-agent`: `@@MV-CMD <id> <timeout> <base64>` in, the output between
 * `@@MV-BEGIN <id>@@` and `@@MV-DONE <id> <status>@@` back).
 *
 * Under TCG on 2 cores the figures measure the emulator as much as the backend; they still
 * rank backends measured alike.
 * @module
 */

import { exists, Proc, shellQuote } from "./proc.ts";
import { track, untrack } from "./registry.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
/** Where `scripts/guest/build.sh` puts the kernel and initramfs. */
export const GUEST_DIR = `${ROOT}build/guest`;
const QEMU = "qemu-system-x86_64";
/** Guest RAM: a shared memfd, as vhost-user backends map it. */
const GUEST_MB = 256;
/** Launch to the agent's ready marker under TCG on a busy machine. */
const BOOT_TIMEOUT_MS = 120_000;
/** Serial input chunk: the agent reads lines. */
const ARG_CHUNK = 1024;

/** The guest's NIC: a vhost-user socket (ours, DPDK) or a tap device (the kernel). */
export type GuestNicSpec =
  | { kind: "vhost-user"; socket: string; mac: string }
  | { kind: "tap"; ifname: string; mac: string };

/** Options of {@link bootGuest}. */
export interface GuestSpec {
  /** Hostname and log name, `[A-Za-z0-9_-]`. */
  name: string;
  nic: GuestNicSpec;
  /** Run QEMU in this network namespace (the kernel reference's taps live there). */
  netns?: string;
}

/** True when the guest is built and QEMU is installed. */
export function guestAvailable(): string | null {
  try {
    Deno.statSync(`${GUEST_DIR}/vmlinux`);
    Deno.statSync(`${GUEST_DIR}/initramfs.cpio.gz`);
  } catch {
    return `no test guest in ${GUEST_DIR} (scripts/guest/build.sh)`;
  }
  const path = (Deno.env.get("PATH") ?? "").split(":");
  if (!path.some((d) => exists(`${d}/${QEMU}`))) return `${QEMU} is not installed`;
  return null;
}

function qemuArgs(spec: GuestSpec): string[] {
  const n = spec.nic;
  const netdev = n.kind === "vhost-user"
    ? ["-chardev", `socket,id=c0,path=${n.socket}`, "-netdev", "vhost-user,id=n0,chardev=c0"]
    // No /dev/vhost-net on these machines: QEMU's own userspace virtio-net backend.
    : ["-netdev", `tap,id=n0,ifname=${n.ifname},script=no,downscript=no,vhost=off`];
  return [
    "-name",
    spec.name,
    "-machine",
    "pc,accel=tcg",
    "-m",
    `${GUEST_MB}M`,
    "-object",
    `memory-backend-memfd,id=mem,size=${GUEST_MB}M,share=on`,
    "-numa",
    "node,memdev=mem",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-kernel",
    `${GUEST_DIR}/vmlinux`,
    "-initrd",
    `${GUEST_DIR}/initramfs.cpio.gz`,
    "-append",
    `console=ttyS0 panic=-1 mv.name=${spec.name}`,
    "-chardev",
    "stdio,id=ser0,signal=off",
    "-serial",
    "chardev:ser0",
    "-no-reboot",
    ...netdev,
    // vectors=0: QEMU 7.2 with TCG, vhost-user and MSI-X crashes when the driver starts the
    // NIC; the tap guest gets the same device so that only the backend differs.
    "-device",
    `virtio-net-pci,netdev=n0,mac=${n.mac},addr=0x10,romfile=,vectors=0`,
  ];
}

/** A running guest; close() kills QEMU by PID. */
export class BenchGuest {
  readonly name: string;
  readonly command: string;
  #proc: Proc;
  #seq = 0;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(name: string, proc: Proc, command: string) {
    this.name = name;
    this.#proc = proc;
    this.command = command;
  }

  /** Boots a guest and waits for its agent. */
  static async boot(spec: GuestSpec): Promise<BenchGuest> {
    if (!/^[A-Za-z0-9_-]{1,40}$/.test(spec.name)) throw new Error(`bad guest name ${spec.name}`);
    // setpriv --pdeathsig: QEMU dies with the harness even if it is SIGKILLed.
    const inner = ["setpriv", "--pdeathsig", "KILL", QEMU, ...qemuArgs(spec)];
    const argv = spec.netns ? ["ip", "netns", "exec", spec.netns, ...inner] : inner;
    const proc = track(Proc.spawn(argv, { stdin: true }));
    const g = new BenchGuest(spec.name, proc, shellQuote(argv));
    try {
      await proc.waitFor(/@@MV-READY [0-9a-f-]+@@/, BOOT_TIMEOUT_MS);
    } catch (e) {
      await g.close();
      throw new Error(`guest ${spec.name}: ${(e as Error).message}\n${g.tail()}`);
    }
    return g;
  }

  /** The last lines of the console, for errors. */
  tail(): string {
    return this.#proc.output().replace(/\r/g, "").split("\n").slice(-20).join("\n");
  }

  /** Runs `cmd` with `sh -c` in the guest; throws on a non-zero status unless `check` is false. */
  run(cmd: string, timeoutMs = 30_000, check = true): Promise<{ output: string; code: number }> {
    const p = this.#queue.then(() => this.#run(cmd, timeoutMs, check));
    this.#queue = p.catch(() => {});
    return p;
  }

  async #run(cmd: string, timeoutMs: number, check: boolean) {
    const id = `b${Deno.pid}x${++this.#seq}`;
    const b64 = btoa(String.fromCharCode(...new TextEncoder().encode(cmd)));
    const from = this.#proc.output().length;
    let i = 0;
    for (; b64.length - i > ARG_CHUNK; i += ARG_CHUNK) {
      await this.#proc.write(`@@MV-ARG ${id} ${b64.slice(i, i + ARG_CHUNK)}\n`);
    }
    await this.#proc.write(`@@MV-CMD ${id} ${Math.ceil(timeoutMs / 1000)} ${b64.slice(i)}\n`);
    const m = await this.#proc.waitFor(
      new RegExp(`@@MV-BEGIN ${id}@@\\r?\\n([\\s\\S]*?)\\r?\\n?@@MV-DONE ${id} (\\d+)@@`),
      timeoutMs + 15_000,
      from,
    ).catch((e) => {
      throw new Error(`guest ${this.name}: ${JSON.stringify(cmd)}: ${(e as Error).message}`);
    });
    const output = m[1].replace(/\r/g, "");
    const code = Number(m[2]);
    if (check && code !== 0) {
      throw new Error(`guest ${this.name}: ${JSON.stringify(cmd)} exited ${code}:\n${output}`);
    }
    return { output, code };
  }

  /** Kills QEMU (by PID) and waits for it. */
  async close(): Promise<void> {
    await this.#proc.stop(0);
    untrack(this.#proc);
  }
}
