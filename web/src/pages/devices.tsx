/** Devices: built next (issue 13). */
export function DevicesPage() {
  return (
    <main class="card">
      <h1>Devices</h1>
    </main>
  )
}
