/** Checks, before any worker starts, that the output directory exists (or can be made) and is writable. */
import {
  DIR_MODE,
  dirOf,
  FILE_MODE,
  pathExists,
  probeWritable,
} from "../store/pcap_file_writer.ts";
import type { PasswdEntry } from "../../ffi/libc.ts";

/** Creates `dir` if needed and proves it writable; throws one clear line otherwise. */
export function ensureWritableDir(dir: string): void {
  try {
    // Folders above --out keep the usual mode (others may need to pass through them).
    Deno.mkdirSync(dirOf(dir), { recursive: true });
    if (!pathExists(dir)) Deno.mkdirSync(dir, { mode: DIR_MODE });
    probeWritable(dir, ".cutcap-write-test-");
  } catch (error) {
    const reason = error instanceof Error ? error.message.split(":")[0] : String(error);
    throw new Error(`Output directory ${dir} is not writable: ${reason}`);
  }
}

/**
 * For `--user`: the folders cutcap just created (`created`, from `missingDirs`) are given to the
 * user; an output directory that existed must be writable by the user and every folder above it
 * searchable, else one line says which command fixes it. Runs as root, before privileges are dropped.
 */
export function prepareDirForUser(
  dir: string,
  user: { name: string } & PasswdEntry,
  created: readonly string[],
): void {
  for (const path of created) Deno.chownSync(path, user.uid, user.gid);
  if (created.length === 0 && !permits(Deno.statSync(dir), user, 0o2)) {
    throw new Error(
      `Output directory ${dir} is not writable by ${user.name}: run chown -R ${user.name}: ${dir}` +
        `, or give --out a directory ${user.name} can write`,
    );
  }
  const real = Deno.realPathSync(dir);
  for (let at = real.lastIndexOf("/"); at > 0; at = real.lastIndexOf("/", at - 1)) {
    const parent = real.slice(0, at);
    if (!permits(Deno.statSync(parent), user, 0o1)) {
      throw new Error(
        `Output directory ${dir} cannot be reached by ${user.name}: ${parent} is not searchable ` +
          `(chmod o+x ${parent}, or give --out a directory elsewhere)`,
      );
    }
  }
}

/**
 * For `--group`: gives the archive to group `gid` for reading. Every existing folder gets the group,
 * mode 2750 (set-group-ID, so files and folders made later inherit the group) and every file the
 * group and no access for others (0640 at most). Links are not followed. Runs before any worker.
 */
export function shareWithGroup(dir: string, gid: number): void {
  Deno.chownSync(dir, null, gid);
  Deno.chmodSync(dir, DIR_MODE | 0o2000);
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) shareWithGroup(path, gid);
    else if (entry.isFile) {
      Deno.chownSync(path, null, gid);
      const mode = Deno.statSync(path).mode ?? FILE_MODE;
      Deno.chmodSync(path, (mode & 0o700) | 0o040);
    }
  }
}

/** Whether `user` (primary group only: --user drops the others) has `bits` (0o2 w, 0o1 x). */
function permits(info: Deno.FileInfo, user: PasswdEntry, bits: number): boolean {
  const mode = info.mode ?? 0;
  if (user.uid === 0) return true;
  if (info.uid === user.uid) return (mode & (bits << 6)) !== 0;
  if (info.gid === user.gid) return (mode & (bits << 3)) !== 0;
  return (mode & bits) !== 0;
}

/** The folders `mkdir -p dir` would create, outermost first. */
export function missingDirs(dir: string): string[] {
  const missing: string[] = [];
  for (let path = dir.replace(/\/+$/, ""); path !== "" && path !== ".";) {
    try {
      Deno.statSync(path);
      break;
    } catch {
      missing.unshift(path);
    }
    const slash = path.lastIndexOf("/");
    path = slash <= 0 ? "" : path.slice(0, slash);
  }
  return missing;
}
