import pixelShuffle from './pixel-shuffle.ts';

export default [pixelShuffle];
