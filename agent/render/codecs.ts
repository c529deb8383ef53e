import { AUDIO_CODECS, VIDEO_CODECS } from '../../schemas/config-repo.js';

export type AudioCodec = (typeof AUDIO_CODECS)[number];
export type VideoCodec = (typeof VIDEO_CODECS)[number];
