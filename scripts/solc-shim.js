#!/usr/bin/env node
// A `solc` executable backed by the official wasm build (npm `solc`).
//
// py-solc-x and forge drive a native solc through two calls only:
//   solc --version
//   solc --standard-json [--base-path P] [--include-path P]... [--allow-paths P,...]
// `solcjs` answers neither the same way (it prints a ">>>" notice before its
// JSON), so this shim answers both through the solc module API. Imports not
// given in the input are read from disk, below the base and include paths.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require(path.join(__dirname, 'toolchain', 'node_modules', 'solc'));

function parseArgs(argv) {
  const opts = { version: false, standardJson: false, roots: [] };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--version') opts.version = true;
    else if (arg === '--standard-json') opts.standardJson = true;
    else if (arg === '--base-path' || arg === '--include-path') opts.roots.push(argv[++i]);
    else if (arg === '--allow-paths') i += 1; // reads are limited to the roots anyway
    else if (arg.startsWith('--')) fail(`solc-shim: unsupported option ${arg}`);
  }
  return opts;
}

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

function findImports(roots) {
  return (importPath) => {
    for (const root of roots.length ? roots : [process.cwd()]) {
      const full = path.resolve(root, importPath);
      if (full.startsWith(path.resolve(root)) && fs.existsSync(full)) {
        return { contents: fs.readFileSync(full, 'utf8') };
      }
    }
    return { error: `File not found: ${importPath}` };
  };
}

const opts = parseArgs(process.argv.slice(2));
if (opts.version) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
} else if (opts.standardJson) {
  const input = fs.readFileSync(0, 'utf8');
  process.stdout.write(solc.compile(input, { import: findImports(opts.roots) }));
} else {
  fail('solc-shim: only --version and --standard-json are supported');
}
