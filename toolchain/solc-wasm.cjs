#!/usr/bin/env node
// Presents the official solc WebAssembly build (npm package `solc`) as a native
// solc executable, for tools that expect one: py-solc-x (so ape-solidity),
// forge and slither. It answers the two calls those tools make:
//
//   solc --version                 -> "Version: 0.8.x+commit.<hash>..."
//   solc --standard-json [flags]   -> standard JSON on stdin, result on stdout
//
// fd 0 and fd 1 are read and written with blocking syscalls: Node's
// process.stdin/stdout switch pipes to non-blocking mode (EAGAIN on large
// inputs) and may drop output still buffered when process.exit() is called.
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

function readAllStdin() {
  const chunks = [];
  const buffer = Buffer.alloc(1 << 16);
  for (;;) {
    let n;
    try {
      n = fs.readSync(0, buffer, 0, buffer.length, null);
    } catch (err) {
      if (err.code === "EAGAIN") continue;
      if (err.code === "EOF") break;
      throw err;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buffer.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString("utf8");
}

function writeAll(fd, text) {
  const data = Buffer.from(text, "utf8");
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += fs.writeSync(fd, data, offset, data.length - offset);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
    }
  }
}

function optionValues(args, name) {
  const values = [];
  args.forEach((arg, i) => {
    if (arg === name && i + 1 < args.length) values.push(args[i + 1]);
    else if (arg.startsWith(name + "=")) values.push(arg.slice(name.length + 1));
  });
  return values.flatMap((v) => v.split(",")).filter(Boolean);
}

// Resolves an import the way native solc does with --base-path / --include-path:
// the first root under which the file exists wins.
function importResolver(args) {
  const roots = [
    ...optionValues(args, "--base-path"),
    ...optionValues(args, "--include-path"),
    process.cwd(),
  ];
  return (importPath) => {
    const candidates = path.isAbsolute(importPath)
      ? [importPath]
      : roots.map((root) => path.resolve(root, importPath));
    for (const candidate of candidates) {
      if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) {
        return { contents: fs.readFileSync(candidate, "utf8") };
      }
    }
    return { error: `File not found: ${importPath}` };
  };
}

// Compiles standard JSON with the WebAssembly module directly. solc-js's `compile` passes the input
// through emscripten's ccall, which copies a string argument onto the WebAssembly stack: a project-sized
// input (over a megabyte of sources) then leaves too little stack for the compiler itself and it dies
// with "memory access out of bounds". Here the input goes to the heap, through solc's own allocator.
function compileStandardJson(input, resolveImport) {
  const soljson = require("solc/soljson");
  const alloc = soljson.cwrap("solidity_alloc", "number", ["number"]);
  const compile = soljson.cwrap("solidity_compile", "number", ["number", "number", "number"]);
  const reset = soljson.cwrap("solidity_reset", null, []);
  const toHeap = (text) => {
    const length = soljson.lengthBytesUTF8(text);
    const pointer = alloc(length + 1);
    soljson.stringToUTF8(text, pointer, length + 1);
    return pointer;
  };
  // solidity_compile's callback: (context, kind, data, *contents, *error); solc frees what we allocate.
  const callback = soljson.addFunction((context, kind, data, contents, error) => {
    const result =
      soljson.UTF8ToString(kind) === "source"
        ? resolveImport(soljson.UTF8ToString(data))
        : { error: "only source imports are supported" };
    if (typeof result.contents === "string") soljson.setValue(contents, toHeap(result.contents), "*");
    else soljson.setValue(error, toHeap(result.error), "*");
  }, "viiiii");
  try {
    return soljson.UTF8ToString(compile(toHeap(input), callback, 0));
  } finally {
    soljson.removeFunction(callback);
    reset();
  }
}

function main(args) {
  if (args.includes("--version")) {
    writeAll(1, `solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
    return 0;
  }
  if (args.includes("--standard-json")) {
    const input = readAllStdin();
    writeAll(1, compileStandardJson(input, importResolver(args)) + "\n");
    return 0;
  }
  writeAll(2, "solc-wasm: only --version and --standard-json are supported\n");
  return 2;
}

process.exitCode = main(process.argv.slice(2));
