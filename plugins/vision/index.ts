import siglipVit from './siglip-vit.ts';

export default [siglipVit];
