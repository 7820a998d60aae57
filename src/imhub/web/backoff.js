// How long to wait before the n-th reconnect attempt (n = 1, 2, …): exponential with jitter,
// as the Python client: a delay drawn between c/2 and c, c = min(cap, base * 2^(n-1)).

export function backoff(n, base = 0.5, cap = 15, random = Math.random) {
  const c = Math.min(cap, base * 2 ** Math.max(0, n - 1));
  return (c / 2 + (random() * c) / 2) * 1000; // milliseconds
}
