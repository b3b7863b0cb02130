export * from './peer-connection.js'
