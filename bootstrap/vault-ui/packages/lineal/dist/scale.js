// vault-plugin-rotation: stand-in for Lineal's scales. A scale here is never valid, so charts draw nothing.
export class EmptyScale {
  isValid = false;
  range = { min: 0, max: 0 };
  domain = { min: 0, max: 0 };
  bandwidth = 0;
  compute() {
    return 0;
  }
  ticks() {
    return [];
  }
}
