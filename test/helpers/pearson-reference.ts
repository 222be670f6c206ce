// The independent reference for correlation tests: two-pass float64 Pearson of two rows; NaN for a constant row.
export function referencePearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = x.length
  let mx = 0, my = 0
  for (let t = 0; t < n; t++) { mx += x[t]; my += y[t] }
  mx /= n; my /= n
  let sxy = 0, sxx = 0, syy = 0
  for (let t = 0; t < n; t++) {
    const dx = x[t] - mx, dy = y[t] - my
    sxy += dx * dy; sxx += dx * dx; syy += dy * dy
  }
  return sxx === 0 || syy === 0 ? NaN : sxy / Math.sqrt(sxx * syy)
}
