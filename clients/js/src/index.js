export { connect, Holdfast, HoldfastError, codes } from "./client.js";
