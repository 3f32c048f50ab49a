// Runs once per `vitest run`: nothing shared yet; each suite starts the servers it needs (test/support).
export default function setup(): void {}
