/** Files on disk as tests look at them: whether a path is there, and the temporary files of an archive. */

/** True when something (a file, a folder, a link, even a dangling one) is at `path`. */
export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Every `.tmp` file under `dir` (files being written, or left by a crash), depth first. */
export function tempFiles(dir: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) found.push(...tempFiles(path));
    else if (entry.name.endsWith(".tmp")) found.push(path);
  }
  return found;
}
