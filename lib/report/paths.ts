/**
 * Where the kit lives on disk. Notebooks run with the kernel's cwd in `notebooks/` and load the kit through the
 * `notebooks/lib` link, so paths are resolved from the kit's own real location, never from the cwd.
 */
import { existsSync, readFileSync, realpathSync } from 'fs';
import * as path from 'path';

/** The project root: the nearest folder above the kit's sources whose package.json names `vitpeft`. */
export function projectRoot(): string {
  let dir = realpathSync(__dirname);
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'vitpeft') return dir;
      } catch {
        /* not JSON: keep looking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`projectRoot: no package.json named 'vitpeft' above ${realpathSync(__dirname)}`);
    dir = up;
  }
}

/** Resolve `p` against the project root (absolute paths are kept). */
export function fromRoot(...p: string[]): string {
  return path.resolve(projectRoot(), ...p);
}
