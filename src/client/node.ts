export * from './peer-node.js'
