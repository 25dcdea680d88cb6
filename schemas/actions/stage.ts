import { Type, type Static } from '@sinclair/typebox'
import { defineAction } from '../action.ts'
import { Id, Version, optionalFields as optional } from '../common.ts'
import { MessageText, Name } from '../text.ts'

/** Positions in the virtual room (metres) and orientation (degrees), as the ov renderer takes them. */
export const Position = Type.Object(
  {
    x: Type.Number({ minimum: -1000, maximum: 1000 }),
    y: Type.Number({ minimum: -1000, maximum: 1000 }),
    z: Type.Number({ minimum: -1000, maximum: 1000 }),
    rX: Type.Number({ minimum: -360, maximum: 360 }),
    rY: Type.Number({ minimum: -360, maximum: 360 }),
    rZ: Type.Number({ minimum: -360, maximum: 360 }),
  },
  { additionalProperties: false },
)
export type Position = Static<typeof Position>

/** Linear gain: 0 silent, 1 unchanged, up to 4 (+12 dB). */
export const Volume = Type.Number({ minimum: 0, maximum: 4 })
export const Directivity = Type.Union([Type.Literal('omni'), Type.Literal('cardioid')])
export const GeoPosition = Type.Object(
  { lat: Type.Number({ minimum: -90, maximum: 90 }), lng: Type.Number({ minimum: -180, maximum: 180 }) },
  { additionalProperties: false },
)
export const AudioType = Type.Union([Type.Literal('mediasoup'), Type.Literal('ov'), Type.Literal('none')])
export const VideoType = Type.Union([Type.Literal('mediasoup'), Type.Literal('none')])
export const StageName = Name()
export const StagePassword = Type.String({ minLength: 1, maxLength: 200 })
export const Color = Type.String({
  pattern: '^#[0-9a-fA-F]{6}$',
  description: 'CSS hex colour, unique in the stage',
})

export const AmbientSound = Type.Object(
  {
    render: Type.Boolean(),
    url: Type.Optional(Type.String({ maxLength: 2048, pattern: '^https?://' })),
    level: Type.Number({ minimum: -100, maximum: 20, description: 'dB' }),
  },
  { additionalProperties: false },
)

/** The room and media fields an admin may set (the whitelist of stage.update). */
const stageSettings = {
  name: StageName,
  width: Type.Number({ exclusiveMinimum: 0, maximum: 1000 }),
  length: Type.Number({ exclusiveMinimum: 0, maximum: 1000 }),
  height: Type.Number({ exclusiveMinimum: 0, maximum: 1000 }),
  absorption: Type.Number({ minimum: 0, maximum: 1 }),
  damping: Type.Number({ minimum: 0, maximum: 1 }),
  reverbGain: Type.Number({ minimum: 0, maximum: 4 }),
  ambientSound: AmbientSound,
  audioType: AudioType,
  videoType: VideoType,
  preferredPosition: GeoPosition,
}

export const StageSettingsPatch = Type.Object(
  {
    ...optional(stageSettings),
    password: Type.Optional(
      Type.Union([StagePassword, Type.Null()], { description: 'null removes the password' }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
)

const OvServer = Type.Object(
  {
    router: Type.Optional(Id),
    ipv4: Type.Optional(Type.String()),
    ipv6: Type.Optional(Type.String()),
    port: Type.Optional(Type.Integer()),
    pin: Type.Optional(Type.Integer()),
    serverJitter: Type.Optional(Type.Number()),
  },
  { additionalProperties: false },
)

/** `stages/{s}`: never the password or its hash; `hasPassword` says whether joining needs one. */
export const StageState = Type.Object(
  {
    id: Id,
    ...stageSettings,
    preferredPosition: Type.Optional(GeoPosition),
    admins: Type.Array(Id),
    hasPassword: Type.Boolean(),
    ovServer: Type.Optional(OvServer),
    mediaRouter: Type.Optional(
      Type.Object({ router: Id, url: Type.String() }, { additionalProperties: false }),
    ),
    version: Version,
  },
  { additionalProperties: false, $id: 'StageState' },
)
export type StageState = Static<typeof StageState>

/** `stages/{s}/groups/{g}` */
export const GroupState = Type.Object(
  {
    id: Id,
    stageId: Id,
    name: Type.String(),
    color: Color,
    volume: Volume,
    muted: Type.Boolean(),
    position: Position,
    version: Version,
  },
  { additionalProperties: false, $id: 'GroupState' },
)
export type GroupState = Static<typeof GroupState>

/** `stages/{s}/members/{u}`: `id` is the member id that `mix.set` with kind `member` takes. */
export const MemberState = Type.Object(
  {
    id: Id,
    stageId: Id,
    userId: Id,
    name: Type.String(),
    groupId: Id,
    seat: Type.Union([Type.Integer({ minimum: 0, maximum: 29 }), Type.Null()], {
      description: 'null while not in the stage',
    }),
    joined: Type.Boolean({ description: 'in the stage now' }),
    online: Type.Boolean({ description: 'in the stage now with at least one device online' }),
    isDirector: Type.Boolean(),
    volume: Volume,
    muted: Type.Boolean(),
    position: Position,
    version: Version,
  },
  { additionalProperties: false, $id: 'MemberState' },
)
export type MemberState = Static<typeof MemberState>

/**
 * `stages/{s}/tracks/{t}`: a track a member sends into the stage. `ov` tracks are the input channels
 * of the active sound card of the member's online ov-boxes; `id` is what `mix.set` with kind `track` takes.
 */
export const StageTrackState = Type.Object(
  {
    id: Id,
    stageId: Id,
    userId: Id,
    memberId: Id,
    deviceId: Id,
    kind: Type.Union([Type.Literal('ov'), Type.Literal('audio'), Type.Literal('video')]),
    name: Type.Optional(Type.String()),
    paused: Type.Optional(
      Type.Boolean({
        description:
          'audio/video: its member paused it (sending off, media.pause): nothing arrives, on purpose. Absent: sending.',
      }),
    ),
    ov: Type.Optional(
      Type.Object(
        {
          soundCardName: Type.String(),
          channel: Type.Integer({ minimum: 0 }),
          gain: Type.Number(),
          directivity: Type.Union([Type.Literal('omni'), Type.Literal('cardioid')]),
        },
        { additionalProperties: false },
      ),
    ),
    version: Version,
  },
  { additionalProperties: false, $id: 'StageTrackState' },
)
export type StageTrackState = Static<typeof StageTrackState>

/** `users/{u}/stages/{s}`: what u needs to list the stage and join it. */
export const StageSummary = Type.Object(
  {
    id: Id,
    name: Type.String(),
    hasPassword: Type.Boolean(),
    audioType: AudioType,
    videoType: VideoType,
    isAdmin: Type.Boolean(),
    isMember: Type.Boolean(),
    /** u is in this stage now. */
    joined: Type.Boolean(),
    groups: Type.Array(
      Type.Object({ id: Id, name: Type.String(), color: Color }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false, $id: 'StageSummary' },
)
export type StageSummary = Static<typeof StageSummary>

export const MixKind = Type.Union([Type.Literal('group'), Type.Literal('member'), Type.Literal('track')])
export type MixKind = Static<typeof MixKind>

/** `users/{u}/mix/{kind}/{id}`: u's own override for a group, member or track. */
export const MixState = Type.Object(
  {
    kind: MixKind,
    id: Id,
    stageId: Id,
    volume: Type.Optional(Volume),
    muted: Type.Optional(Type.Boolean()),
    position: Type.Optional(Position),
    directivity: Type.Optional(Directivity),
    version: Version,
  },
  { additionalProperties: false, $id: 'MixState' },
)
export type MixState = Static<typeof MixState>

/** `stages/{s}/chat` (not retained). */
export const ChatMessage = Type.Object(
  {
    id: Id,
    stageId: Id,
    userId: Id,
    name: Type.String(),
    text: Type.String(),
    time: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false, $id: 'ChatMessage' },
)
export type ChatMessage = Static<typeof ChatMessage>

const StageRef = { stageId: Id }
const Empty = Type.Object({}, { additionalProperties: false })

export const stageCreate = defineAction({
  name: 'stage.create',
  changesState: true,
  targets: { stageId: 'result.id' },
  description:
    'Create a stage; the caller becomes its admin. Unset room fields take the defaults of the original system.',
  params: Type.Object(
    { ...optional(stageSettings), name: StageName, password: Type.Optional(StagePassword) },
    { additionalProperties: false },
  ),
  result: StageState,
})

export const stageUpdate = defineAction({
  name: 'stage.update',
  changesState: true,
  targets: { stageId: 'params.stageId' },
  description:
    'Admins change whitelisted stage fields; admins change only through stage.addAdmin/removeAdmin.',
  params: Type.Object(
    { ...StageRef, patch: StageSettingsPatch, version: Type.Optional(Version) },
    { additionalProperties: false },
  ),
  result: StageState,
})

export const stageRemove = defineAction({
  name: 'stage.remove',
  changesState: true,
  targets: { stageId: 'params.stageId' },
  description: 'Admins remove the stage with its groups, members, tracks and mixes.',
  params: Type.Object(StageRef, { additionalProperties: false }),
  result: Empty,
})

export const stageAddAdmin = defineAction({
  name: 'stage.addAdmin',
  changesState: true,
  targets: { stageId: 'params.stageId', userId: 'params.userId' },
  description: 'An admin makes another user an admin of the stage.',
  params: Type.Object({ ...StageRef, userId: Id }, { additionalProperties: false }),
  result: StageState,
})

export const stageRemoveAdmin = defineAction({
  name: 'stage.removeAdmin',
  changesState: true,
  targets: { stageId: 'params.stageId', userId: 'params.userId' },
  description: 'An admin removes an admin (possibly themself); the last admin cannot be removed.',
  params: Type.Object({ ...StageRef, userId: Id }, { additionalProperties: false }),
  result: StageState,
})

export const stageJoin = defineAction({
  name: 'stage.join',
  changesState: true,
  targets: { stageId: 'params.stageId', groupId: 'params.groupId', memberId: 'result.id' },
  description:
    'Join a stage in one of its groups, taking the lowest free seat; leaves the current stage first.',
  params: Type.Object(
    { ...StageRef, groupId: Id, password: Type.Optional(Type.String({ maxLength: 200 })) },
    { additionalProperties: false },
  ),
  result: MemberState,
})

export const stageLeave = defineAction({
  name: 'stage.leave',
  changesState: true,
  description: 'Leave the current stage; the membership stays (offline, seat released).',
  params: Empty,
  result: Empty,
})

export const stageForget = defineAction({
  name: 'stage.forget',
  changesState: true,
  targets: { stageId: 'params.stageId' },
  description: "Delete one's membership of a stage and everything hanging off it.",
  params: Type.Object(StageRef, { additionalProperties: false }),
  result: Empty,
})

const groupFields = {
  name: Name(),
  color: Color,
  volume: Volume,
  muted: Type.Boolean(),
  position: Position,
}

export const groupCreate = defineAction({
  name: 'group.create',
  changesState: true,
  targets: { stageId: 'params.stageId', groupId: 'result.id' },
  description: 'Admins add a group to a stage.',
  params: Type.Object(
    {
      ...StageRef,
      name: groupFields.name,
      color: Type.Optional(
        Type.String({
          ...Color,
          description: 'CSS hex colour, unique in the stage; without it the hub picks a free one',
        }),
      ),
      volume: Type.Optional(Volume),
      muted: Type.Optional(Type.Boolean()),
      position: Type.Optional(Position),
    },
    { additionalProperties: false },
  ),
  result: GroupState,
})

export const groupUpdate = defineAction({
  name: 'group.update',
  changesState: true,
  targets: { stageId: 'params.stageId', groupId: 'params.groupId' },
  description: 'Admins change a group.',
  params: Type.Object(
    {
      ...StageRef,
      groupId: Id,
      patch: Type.Object(optional(groupFields), { additionalProperties: false, minProperties: 1 }),
      version: Type.Optional(Version),
    },
    { additionalProperties: false },
  ),
  result: GroupState,
})

export const groupRemove = defineAction({
  name: 'group.remove',
  changesState: true,
  targets: { stageId: 'params.stageId', groupId: 'params.groupId' },
  description:
    'Admins remove a group. Its members move to `moveTo` (another group of the stage) when given; otherwise their memberships are removed.',
  params: Type.Object(
    { ...StageRef, groupId: Id, moveTo: Type.Optional(Id) },
    { additionalProperties: false },
  ),
  result: Empty,
})

export const memberUpdate = defineAction({
  name: 'member.update',
  changesState: true,
  targets: { stageId: 'params.stageId', userId: 'params.userId', memberId: 'result.id' },
  description: 'Admins change a member: group (of the same stage), director flag, volume, muted, position.',
  params: Type.Object(
    {
      ...StageRef,
      userId: Id,
      patch: Type.Object(
        {
          groupId: Type.Optional(Id),
          isDirector: Type.Optional(Type.Boolean()),
          volume: Type.Optional(Volume),
          muted: Type.Optional(Type.Boolean()),
          position: Type.Optional(Position),
        },
        { additionalProperties: false, minProperties: 1 },
      ),
      version: Type.Optional(Version),
    },
    { additionalProperties: false },
  ),
  result: MemberState,
})

export const memberRemove = defineAction({
  name: 'member.remove',
  changesState: true,
  targets: { stageId: 'params.stageId', userId: 'params.userId' },
  description: 'Admins remove a member and everything hanging off the membership.',
  params: Type.Object({ ...StageRef, userId: Id }, { additionalProperties: false }),
  result: Empty,
})

export const mixSet = defineAction({
  name: 'mix.set',
  changesState: true,
  targets: { stageId: 'result.stageId', mixTarget: 'params.id' },
  description:
    "Set the caller's own override for a group, member or track of a stage the caller belongs to. Fields not given stay as they are.",
  params: Type.Object(
    {
      kind: MixKind,
      id: Id,
      volume: Type.Optional(Volume),
      muted: Type.Optional(Type.Boolean()),
      position: Type.Optional(Position),
      directivity: Type.Optional(Directivity),
      version: Type.Optional(Version),
    },
    { additionalProperties: false, minProperties: 3 },
  ),
  result: MixState,
})

export const mixRemove = defineAction({
  name: 'mix.remove',
  changesState: true,
  targets: { mixTarget: 'params.id' },
  description: "Remove the caller's override.",
  params: Type.Object({ kind: MixKind, id: Id }, { additionalProperties: false }),
  result: Empty,
})

export const chatSend = defineAction({
  name: 'chat.send',
  changesState: false,
  targets: { stageId: 'result.stageId' },
  description:
    'Send a chat message to the stage the caller is in now (published on stages/{s}/chat, not retained).',
  params: Type.Object({ text: MessageText(1000) }, { additionalProperties: false }),
  result: ChatMessage,
})
