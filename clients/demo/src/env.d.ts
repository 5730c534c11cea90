// The SDK looks for Node's `process` to tell Node from a browser; the demo
// runs only in browsers, so it needs no Node types beyond that name.
declare const process: { versions?: { node?: string } } | undefined;
