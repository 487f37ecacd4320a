/**
 * Makes sure libpcap can be loaded before capture starts. On a bare Debian/Ubuntu machine, as root, the
 * missing library is installed with apt-get (the embedded default must "just work"); elsewhere cutcap stops
 * with the exact command to run.
 */
import { logInfo } from "../log.ts";

const INSTALL = ["apt-get", "install", "-y", "libpcap0.8"];

/** Loads libpcap through `load`, installing it first when that is missing and possible. */
export async function ensureLibpcap(
  path: string | undefined,
  load: (path?: string) => unknown,
): Promise<void> {
  try {
    load(path);
    return;
  } catch (error) {
    if (path !== undefined || !(await canInstall())) throw error;
  }
  logInfo(`libpcap is missing: running ${INSTALL.join(" ")}`);
  const update = await new Deno.Command("apt-get", { args: ["update", "-qq"], stdout: "null" })
    .output();
  const install = await new Deno.Command(INSTALL[0], {
    args: INSTALL.slice(1),
    stdout: "null",
    env: { DEBIAN_FRONTEND: "noninteractive" },
  }).output();
  if (!update.success || !install.success) {
    throw new Error(`Cannot install libpcap: run "${INSTALL.join(" ")}" as root`);
  }
  load(path);
}

async function canInstall(): Promise<boolean> {
  if (Deno.uid() !== 0) return false;
  try {
    return (await new Deno.Command("apt-get", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}
