import cosineWarmup from './cosine-warmup.ts';
import constant from './constant.ts';

export default [cosineWarmup, constant];
