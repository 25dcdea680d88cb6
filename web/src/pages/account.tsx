import { useSignal } from '@preact/signals'
import { connection, hub, profile } from '../connection.ts'
import { renewed } from '../session.ts'
import { fields, message, Outcome, usePageTitle } from '../ui.tsx'

/**
 * The profile and password forms. Fields start from the profile and keep what the person types
 * (defaults, not controlled values): a live profile update shows only in fields not edited yet.
 */
function ProfileForms() {
  const nameOutcome = useSignal({ text: '', failed: false })
  const passwordOutcome = useSignal({ text: '', failed: false })
  const online = connection.value.state === 'online'

  const rename = async (event: Event) => {
    const field = fields(event)
    try {
      const avatarUrl = field('avatarUrl').trim()
      await hub.value!.request('user.update', { name: field('name'), avatarUrl: avatarUrl || null })
      nameOutcome.value = { text: 'Profile saved', failed: false }
    } catch (err) {
      nameOutcome.value = { text: message(err), failed: true }
    }
  }
  const changePassword = async (event: Event) => {
    const form = event.currentTarget as HTMLFormElement
    const field = fields(event)
    try {
      renewed(
        await hub.value!.request('user.changePassword', {
          currentPassword: field('current'),
          newPassword: field('new'),
        }),
      )
      form.reset()
      passwordOutcome.value = { text: 'Password changed: other sessions are signed out', failed: false }
    } catch (err) {
      passwordOutcome.value = { text: message(err), failed: true }
    }
  }
  return (
    <>
      <section aria-labelledby="name-heading">
        <h2 id="name-heading">Your profile</h2>
        <form onSubmit={(e) => void rename(e)}>
          <label>
            Name
            <input
              name="name"
              autoComplete="name"
              required
              maxLength={100}
              defaultValue={profile.value?.name ?? ''}
            />
          </label>
          <label>
            Picture (an https:// address, optional)
            <input
              name="avatarUrl"
              type="url"
              inputMode="url"
              maxLength={2048}
              pattern="https?://.*"
              defaultValue={profile.value?.avatarUrl ?? ''}
            />
          </label>
          <Outcome {...nameOutcome.value} />
          <button type="submit" disabled={!online}>
            Save profile
          </button>
        </form>
      </section>
      <section aria-labelledby="password-heading">
        <h2 id="password-heading">Password</h2>
        <form onSubmit={(e) => void changePassword(e)}>
          <label>
            Current password
            <input name="current" type="password" autoComplete="current-password" required />
          </label>
          <label>
            New password
            <input name="new" type="password" autoComplete="new-password" required minLength={8} />
          </label>
          <Outcome {...passwordOutcome.value} />
          <button type="submit" disabled={!online}>
            Change password
          </button>
        </form>
      </section>
    </>
  )
}

/** The person's account: name, picture and password. */
export function AccountPage() {
  usePageTitle('Account')
  return (
    <main class="card">
      <div class="greeting">
        {profile.value?.avatarUrl && (
          <img class="avatar" src={profile.value.avatarUrl} alt="" referrerpolicy="no-referrer" />
        )}
        <h1>{profile.value ? `Hello, ${profile.value.name}` : 'Hello'}</h1>
      </div>
      {profile.value && (
        <p>
          Signed in as <strong data-testid="profile-name">{profile.value.name}</strong>
        </p>
      )}
      <ProfileForms />
    </main>
  )
}
