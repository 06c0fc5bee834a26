/**
 * The package version both CLIs print for `--version`, read from package.json beside the build.
 * Owns nothing else; never throws (an unreadable package.json gives "unknown").
 */
import { readFileSync } from 'node:fs';

export function readVersion(): string {
  try {
    // Compiled to dist/src/cli/version.js, three levels below the package root.
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
