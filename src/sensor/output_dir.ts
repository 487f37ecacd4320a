/** Checks, before any worker starts, that the output directory exists (or can be made) and is writable. */
import { probeWritable } from "../store/pcap_file_writer.ts";

/** Creates `dir` if needed and proves it writable; throws one clear line otherwise. */
export function ensureWritableDir(dir: string): void {
  try {
    Deno.mkdirSync(dir, { recursive: true });
    probeWritable(dir, ".cutcap-write-test-");
  } catch (error) {
    const reason = error instanceof Error ? error.message.split(":")[0] : String(error);
    throw new Error(`Output directory ${dir} is not writable: ${reason}`);
  }
}
