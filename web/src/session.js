// Firebase (modular SDK v12, bundled): the web app's configuration from Hosting's reserved URL
// /__/firebase/init.json; on a loopback host the emulators' addresses from the Hosting emulator's
// /__/firebase/init.js?useEmulator=true, so the page connects to Auth and Firestore emulators on
// whatever ports the local stack chose. The user's role and tenant come from the ID token's claims.
import { initializeApp } from "firebase/app";
import { connectAuthEmulator, getAuth, onAuthStateChanged, signInWithEmailAndPassword, signOut } from "firebase/auth";
import { connectFirestoreEmulator, getFirestore } from "firebase/firestore";

let auth = null;
let db = null;

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

async function emulatorHosts() {
  const text = await (await fetch("/__/firebase/init.js?useEmulator=true")).text();
  const found = /var firebaseEmulators = (\{[\s\S]*?\n\});/.exec(text);
  return found ? JSON.parse(found[1]) : null;
}

export async function initFirebase() {
  const config = await (await fetch("/__/firebase/init.json")).json();
  const app = initializeApp(config);
  auth = getAuth(app);
  db = getFirestore(app);
  if (LOOPBACK.has(location.hostname)) {
    const emulators = await emulatorHosts();
    if (emulators?.auth) connectAuthEmulator(auth, `http://${emulators.auth.hostAndPort}`, { disableWarnings: true });
    if (emulators?.firestore) connectFirestoreEmulator(db, emulators.firestore.host, emulators.firestore.port);
  }
  return { auth, db, projectId: config.projectId };
}

export function firestore() {
  return db;
}

export function onUser(callback) {
  return onAuthStateChanged(auth, async (user) => {
    if (!user) return callback(null);
    const result = await user.getIdTokenResult();
    callback({
      uid: user.uid,
      email: user.email,
      role: typeof result.claims.role === "string" ? result.claims.role : null,
      tenantId: typeof result.claims.tenant_id === "string" ? result.claims.tenant_id : null,
    });
  });
}

export function signIn(email, password) {
  return signInWithEmailAndPassword(auth, email, password);
}

export function logOut() {
  return signOut(auth);
}

export async function currentToken() {
  if (!auth?.currentUser) throw new Error("not signed in");
  return auth.currentUser.getIdToken();
}
