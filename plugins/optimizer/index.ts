import adamw from './adamw.ts';

export default [adamw];
