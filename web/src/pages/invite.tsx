/** An invitation opened: built next (issue 13). */
export function InvitePage({ code }: { code: string }) {
  return (
    <main class="card">
      <h1>Invitation {code}</h1>
    </main>
  )
}
